package pipit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestConstants checks every Go constant against spec/constants.json.
func TestConstants(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(specDir(t), "constants.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		ProtocolVersion int `json:"protocolVersion"`
		Word            struct {
			Bytes, MaxLength, MaxFrameBytes, MinMaxFrameBytes int
		}
		Varint     struct{ MaxBytes, MaxLastByte int }
		FrameTypes struct {
			Types []struct {
				Name  string
				Code  int
				Flags any
			}
			Reserved []int
		}
		Flags struct {
			Values map[string]int
		}
		ExtTags struct {
			Tags []struct {
				Name string
				Tag  int
			}
		}
		HelloSettings struct {
			Settings []struct {
				Name              string
				Key               uint32
				Default, Min, Max uint64
			}
		}
		Credit        struct{ DefaultInitial, Max int }
		Names         struct{ MaxBytes int }
		StatusMessage struct{ MaxBytes int }
		StatusCodes   struct {
			Codes []struct {
				Name           string
				Code           Code
				HandlerMaySend bool
				NotProcessed   bool
				LocalOnly      bool
			}
			Reserved        struct{ From, To int }
			ApplicationMin  int
			ApplicationMax  uint64
			HandlerFallback string
		}
		CodecErrors struct {
			Errors []struct {
				Name      string
				Code      int
				AtEndOnly bool
			}
		}
		SessionViolations      struct{ Names []string }
		ImplementationDefaults map[string]any
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	eq := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s: Go has %v, constants.json %v", what, got, want)
		}
	}
	eq("protocolVersion", ProtocolVersion, c.ProtocolVersion)
	eq("word.bytes", WordBytes, c.Word.Bytes)
	eq("word.maxLength", MaxLength, c.Word.MaxLength)
	eq("word.maxFrameBytes", MaxFrameBytesLimit, c.Word.MaxFrameBytes)
	eq("word.minMaxFrameBytes", MinMaxFrameBytes, c.Word.MinMaxFrameBytes)
	eq("varint.maxBytes", MaxVarintBytes, c.Varint.MaxBytes)
	eq("varint.maxLastByte", maxVarintLastByte, c.Varint.MaxLastByte)

	seen := map[int]bool{}
	for _, ft := range c.FrameTypes.Types {
		seen[ft.Code] = true
		eq("type name "+ft.Name, FrameType(ft.Code).String(), ft.Name)
		var want Flags
		switch fl := ft.Flags.(type) {
		case string:
			want = 0xF
		case []any:
			for _, n := range fl {
				want |= Flags(c.Flags.Values[n.(string)])
			}
		}
		eq("allowed flags of "+ft.Name, allowedFlags[ft.Code], want)
	}
	for _, r := range c.FrameTypes.Reserved {
		if seen[r] || checkWord(1, byte(r), 100) != ErrUnknownType {
			t.Errorf("type %d should be reserved", r)
		}
	}
	for code := 0; code < 16; code++ {
		if !seen[code] && checkWord(1, byte(code), 100) != ErrUnknownType {
			t.Errorf("type %d accepted but not in constants.json", code)
		}
	}
	flagConst := map[string]Flags{"STREAM": FlagStream, "END": FlagEnd, "TEXT": FlagText, "FOLLOWS": FlagFollows, "EXT": FlagExt}
	eq("flag count", len(c.Flags.Values), len(flagConst))
	for n, v := range c.Flags.Values {
		eq("flag "+n, flagConst[n], Flags(v))
	}
	tags := map[string]int{"DEADLINE": ExtDeadline, "CREDIT": ExtCredit, "METADATA": ExtMetadata}
	eq("ext tag count", len(c.ExtTags.Tags), len(tags))
	for _, tg := range c.ExtTags.Tags {
		eq("ext tag "+tg.Name, tags[tg.Name], tg.Tag)
	}
	eq("setting count", len(c.HelloSettings.Settings), len(helloSettings))
	for i, s := range c.HelloSettings.Settings {
		g := helloSettings[i]
		eq("setting name", g.name, s.Name)
		eq(s.Name+" key", g.key, s.Key)
		eq(s.Name+" default", g.def, s.Default)
		eq(s.Name+" min", g.min, s.Min)
		eq(s.Name+" max", g.max, s.Max)
	}
	eq("MAX_FRAME_BYTES const", uint32(SettingMaxFrameBytes), helloSettings[0].key)
	eq("MAX_MESSAGE_BYTES const", uint32(SettingMaxMessageBytes), helloSettings[1].key)
	eq("MAX_INFLIGHT const", uint32(SettingMaxInflight), helloSettings[2].key)
	eq("DefaultMaxFrameBytes", uint64(DefaultMaxFrameBytes), helloSettings[0].def)
	eq("DefaultMaxMessageBytes", uint64(DefaultMaxMessageBytes), helloSettings[1].def)
	eq("DefaultMaxInflight", uint64(DefaultMaxInflight), helloSettings[2].def)
	eq("credit.defaultInitial", DefaultCredit, c.Credit.DefaultInitial)
	eq("credit.max", MaxCredit, c.Credit.Max)
	eq("names.maxBytes", MaxNameBytes, c.Names.MaxBytes)
	eq("statusMessage.maxBytes", MaxStatusMessageBytes, c.StatusMessage.MaxBytes)

	eq("status code count", len(c.StatusCodes.Codes), len(codeNames))
	for _, s := range c.StatusCodes.Codes {
		eq("status name", s.Code.String(), s.Name)
		eq(s.Name+" handlerMaySend", handlerMaySend(s.Code), s.HandlerMaySend)
		eq(s.Name+" localOnly", s.Code == CodeConnectionClosed, s.LocalOnly)
	}
	for code := c.StatusCodes.Reserved.From; code <= c.StatusCodes.Reserved.To; code++ {
		if handlerMaySend(Code(code)) {
			t.Errorf("handler may send reserved code %d", code)
		}
		e := &Error{Code: Code(code), wire: true}
		if e.codeName() != Code(code).String() || Code(code).String()[:7] != "UNKNOWN" {
			t.Errorf("reserved code %d prints %q", code, e.codeName())
		}
	}
	if e := (&Error{Code: 11, wire: true}); e.codeName() != "UNKNOWN(11)" {
		t.Errorf("received status 11 prints %q", e.codeName())
	}
	eq("applicationMin", int(CodeApplicationMin), c.StatusCodes.ApplicationMin)
	eq("applicationMax", uint64(^uint32(0)), c.StatusCodes.ApplicationMax)
	eq("handlerFallback", CodeApplicationError.String(), c.StatusCodes.HandlerFallback)
	if !handlerMaySend(Code(c.StatusCodes.ApplicationMin)) || !handlerMaySend(Code(c.StatusCodes.ApplicationMax)) {
		t.Error("handler may not send application codes")
	}

	eq("codec error count", len(c.CodecErrors.Errors), len(errCodeNames)-1)
	for _, e := range c.CodecErrors.Errors {
		eq("codec error", ErrCode(e.Code).String(), e.Name)
		eq(e.Name+" atEndOnly", ErrCode(e.Code) == ErrIncomplete, e.AtEndOnly)
	}
	eq("violation count", len(c.SessionViolations.Names), len(sessionViolations))
	for i, n := range c.SessionViolations.Names {
		eq("violation", sessionViolations[i], n)
	}
	defs := map[string]int{
		"maxFrameBytes": DefaultOptMaxFrameBytes, "maxMessageBytes": DefaultOptMaxMessageBytes,
		"maxInflight": DefaultOptMaxInflight, "maxQueuedCalls": DefaultOptMaxQueuedCalls,
		"maxReassemblyBytes": DefaultOptMaxReassemblyBytes, "initialCredit": DefaultOptInitialCredit,
		"maxStreamWindowBytes": DefaultOptMaxStreamWindowBytes, "maxWriteBufferBytes": DefaultOptMaxWriteBufferBytes,
	}
	n := 0
	for k, v := range c.ImplementationDefaults {
		f, ok := v.(float64)
		if !ok {
			continue
		}
		n++
		want, ok := defs[k]
		if !ok {
			t.Errorf("implementation default %s has no Go constant", k)
			continue
		}
		eq("implementationDefaults."+k, want, int(f))
	}
	eq("implementation default count", n, len(defs))
	// The options resolve to these defaults.
	var o Options
	o.setDefaults()
	eq("Options.MaxFrameBytes", o.MaxFrameBytes, DefaultOptMaxFrameBytes)
	eq("Options.MaxMessageBytes", o.MaxMessageBytes, DefaultOptMaxMessageBytes)
	eq("Options.MaxInflight", o.MaxInflight, DefaultOptMaxInflight)
	eq("Options.MaxQueuedCalls", o.MaxQueuedCalls, DefaultOptMaxQueuedCalls)
	eq("Options.MaxReassemblyBytes", o.MaxReassemblyBytes, DefaultOptMaxReassemblyBytes)
	eq("Options.InitialCredit", o.InitialCredit, DefaultOptInitialCredit)
	eq("Options.MaxStreamWindowBytes", o.MaxStreamWindowBytes, DefaultOptMaxStreamWindowBytes)
	eq("Options.MaxWriteBufferBytes", o.MaxWriteBufferBytes, DefaultOptMaxWriteBufferBytes)
}
