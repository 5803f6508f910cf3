package pipit

type inUser struct{}
