package agent

import (
	"testing"

	"github.com/mercury-apm/mercury/schemas"
)

func TestRootSpanIDIsTheTraceIDsSecondHalfUnlessZero(t *testing.T) {
	tr := schemas.TraceID{8: 1, 15: 2}
	if got := rootSpanID(tr); got != (schemas.SpanID{0: 1, 7: 2}) {
		t.Fatalf("root span id %x of trace %x", got, tr)
	}
	if got := rootSpanID(schemas.TraceID{0: 1}); got.IsZero() { // a valid trace id, zero half
		t.Fatal("zero root span id")
	}
}
