package signature

import (
	"slices"
	"testing"

	"github.com/mercury-apm/mercury/schemas"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"order 12345 not found", "order <n> not found"},
		{`user "alice" has no card 'visa-4242'`, `user "?" has no card "?"`},
		{"dial tcp 10.0.0.12:8080: connection refused", "dial tcp <n>.<n>:<n>: connection refused"},
		{"trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7 failed", "trace <hex> span <hex> failed"},
		{"request 3f2504e0-4f89-11d3-9a0c-0305e82c3301 timed out after 1.5s", "request <uuid> timed out after <n>s"},
		{"bad pointer 0xc000123abc", "bad pointer <hex>"},
		{"  many\t spaces \n", "many spaces"},
		{"payment declined", "payment declined"},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

const agentStack = "github.com/shop/pay.(*Service).Charge\n\t/src/pay/service.go:42\ngithub.com/shop/pay.handler\n\t/src/pay/http.go:17\nnet/http.HandlerFunc.ServeHTTP\n\t/go/src/net/http/server.go:2220\n"

const debugStack = `goroutine 7 [running]:
runtime/debug.Stack()
	/go/src/runtime/debug/stack.go:26 +0x5e
panic({0x6f2b20?, 0xc0000a4000?})
	/go/src/runtime/panic.go:770 +0x132
github.com/shop/pay.(*Service).Charge(0xc000010000, {0x0, 0x0})
	/src/pay/service.go:42 +0x25
github.com/shop/pay.handler(...)
	/src/pay/http.go:17
`

func TestFrames(t *testing.T) {
	want := []string{"github.com/shop/pay.(*Service).Charge", "github.com/shop/pay.handler"}
	if got := Frames(agentStack, 2); !slices.Equal(got, want) {
		t.Errorf("agent stack frames = %q", got)
	}
	if got := Frames(debugStack, 5); !slices.Equal(got, want) {
		t.Errorf("debug.Stack frames = %q", got)
	}
	java := "java.lang.IllegalStateException: boom\n\tat com.shop.Pay.charge(Pay.java:42)\n\tat com.shop.Http.handle(Http.java:7)\n"
	if got := Frames(java, 1); !slices.Equal(got, []string{"java.lang.IllegalStateException: boom"}) {
		t.Errorf("java frames = %q", got)
	}
}

func TestOf(t *testing.T) {
	base := schemas.Event{Service: "pay", Host: "h1", Type: schemas.EventException, Name: "*errors.errorString",
		Message: "charge order 100231 failed: card 4242 declined", Stack: agentStack,
		Attributes: []schemas.KV{{Key: "route", Value: "/pay"}}}
	sig := Of(&base, nil, 5)
	same := base
	same.Host, same.Message = "h2", "charge order 999 failed: card 1111 declined"
	if Of(&same, nil, 5) != sig {
		t.Error("messages differing only in ids and hosts must share a signature")
	}
	for name, mutate := range map[string]func(*schemas.Event){
		"class":   func(e *schemas.Event) { e.Name = "*net.OpError" },
		"service": func(e *schemas.Event) { e.Service = "order" },
		"type":    func(e *schemas.Event) { e.Type = schemas.EventBreaker },
		"message": func(e *schemas.Event) { e.Message = "charge order 1 failed: timeout" },
		"frames":  func(e *schemas.Event) { e.Stack = "github.com/shop/pay.other\n\tx.go:1\n" },
	} {
		e := base
		mutate(&e)
		if Of(&e, nil, 5) == sig {
			t.Errorf("a different %s must make a different signature", name)
		}
	}
	deeper := base
	deeper.Stack = agentStack + "main.main\n\tmain.go:1\n"
	if Of(&deeper, nil, 2) != Of(&base, nil, 2) {
		t.Error("frames below the depth must not count")
	}
	// A fingerprint rule groups by what it names, here the route whatever the message.
	fp := []string{"service", "attr:route"}
	other := base
	other.Name, other.Message = "*net.OpError", "dial failed"
	if Of(&other, fp, 5) != Of(&base, fp, 5) {
		t.Error("a fingerprint over service and route must ignore class and message")
	}
}
