module github.com/pipit-rpc/pipit/go

go 1.25
