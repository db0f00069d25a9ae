package agent

import (
	"testing"
	"unsafe"

	"github.com/mercury-apm/mercury/schemas"
)

func TestMaskNumbers(t *testing.T) {
	cases := []struct{ in, want string }{
		{"13812345678", "138****5678"},
		{"call 13812345678 now", "call 138****5678 now"},
		{"tel:+8613812345678", "tel:+86138****5678"},
		{"12812345678", "12812345678"},   // no mobile prefix
		{"138123456789", "138123456789"}, // 12 digits: not a phone
		{"id 11010519491231002X ok", "id 110105********002X ok"},
		{"11010519491231002x", "110105********002x"},
		{"110105194912310021", "110105194912310021"}, // bad checksum
		{"card 4111111111111111", "card 4111********1111"},
		{"4111111111111112", "4111111111111112"}, // fails Luhn
		{"order 1234567890", "order 1234567890"},
		{"", ""},
		{"订单13812345678", "订单138****5678"},
	}
	for _, c := range cases {
		if got := maskNumbers(c.in); got != c.want {
			t.Errorf("maskNumbers(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestMaskerKeysAndPatterns(t *testing.T) {
	m, err := newMasker(MaskConfig{Patterns: []string{`[a-z]+@[a-z]+\.com`}})
	if err != nil {
		t.Fatal(err)
	}
	s := schemas.Span{
		Tags: []schemas.KV{{Key: "Authorization", Value: "Bearer abc"}, {Key: "db.password", Value: "x"},
			{Key: "http.url", Value: "/u?mail=bob@corp.com"}, {Key: "phone", Value: "13812345678"}},
		BusinessKeys: []schemas.KV{{Key: "user_phone", Value: "13812345678"}, {Key: "api_token", Value: "t"}},
		Events:       []schemas.SpanEvent{{Attributes: []schemas.KV{{Key: "session_token", Value: "s"}}}},
	}
	m.span(&s)
	want := map[string]string{"Authorization": "***", "db.password": "***", "http.url": "/u?mail=***", "phone": "138****5678"}
	for k, v := range want {
		if got, _ := schemas.Get(s.Tags, k); got != v {
			t.Errorf("tag %s = %q, want %q", k, got, v)
		}
	}
	// Business keys stay searchable; a sensitive key name is still masked.
	if got, _ := schemas.Get(s.BusinessKeys, "user_phone"); got != "13812345678" {
		t.Errorf("business key masked by value: %q", got)
	}
	if got, _ := schemas.Get(s.BusinessKeys, "api_token"); got != "***" {
		t.Errorf("sensitive business key name not masked: %q", got)
	}
	if got, _ := schemas.Get(s.Events[0].Attributes, "session_token"); got != "***" {
		t.Errorf("event attribute: %q", got)
	}
	m2, _ := newMasker(MaskConfig{MaskBusinessKeys: true, Keys: []string{}})
	bk := []schemas.KV{{Key: "user_phone", Value: "13812345678"}}
	m2.kvs(bk, m2.bk)
	if bk[0].Value != "138****5678" {
		t.Errorf("MaskBusinessKeys: %q", bk[0].Value)
	}
	if _, err := newMasker(MaskConfig{Patterns: []string{"("}}); err == nil {
		t.Error("bad pattern accepted")
	}
	if DefaultMaskKeys[0] != "password" {
		t.Error("newMasker modified DefaultMaskKeys")
	}
}

// The writer masks spans whose strings point into its batch buffer, which the queue refills
// with the next spans: the key memo must keep copies, not those bytes.
func TestMaskMemoOwnsItsKeys(t *testing.T) {
	m, err := newMasker(MaskConfig{})
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte("harmless")
	if m.sensitiveKey(unsafe.String(&buf[0], len(buf))) {
		t.Fatal("harmless is sensitive")
	}
	for k := range m.seen {
		if unsafe.StringData(k) == &buf[0] {
			t.Fatal("the memo keeps a key that points into the writer's buffer")
		}
	}
}
