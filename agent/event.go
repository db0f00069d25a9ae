package agent

import (
	"errors"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// Event is a one-off occurrence for the real-time alerter: an exception, a breaker transition,
// a limiter activation. Events are never sampled: alerts must not depend on sampling.
type Event struct {
	Type       string // schemas.EventException, EventBreaker, ...
	Name       string // exception class, breaker or switch name
	Message    string
	Operation  string
	Stack      string
	Attributes map[string]string
}

// Emit records an event with the default agent.
func Emit(ev Event) { Default().Emit(ev) }

// Emit records an event. Like End, it never blocks.
func (a *Agent) Emit(ev Event) { a.emit(ev, nil) }

func (a *Agent) emit(ev Event, s *Span) {
	if a == nil || a.runtime.Load().killed {
		return
	}
	rec := schemas.Event{
		TimeUnixNano: time.Now().UnixNano(), Type: ev.Type, Name: ev.Name, Message: ev.Message,
		Stack: ev.Stack, Operation: ev.Operation,
	}
	for k, v := range ev.Attributes {
		rec.Attributes = append(rec.Attributes, schemas.KV{Key: k, Value: v})
	}
	if s != nil {
		rec.TraceID, rec.SpanID, rec.Dyed = s.sc.TraceID, s.sc.SpanID, s.sc.Dyed
		if r := s.live(); r != nil && rec.Operation == "" {
			rec.Operation = r.Operation
		}
	}
	if a.closed.Load() {
		a.dropClosed.Add(1)
		return
	}
	select {
	case a.events <- rec:
	default:
		a.dropQueue.Add(1)
	}
}

// RecordError marks the span failed, notes the exception in it, and emits an exception Event
// with the stack of the caller, whether or not the trace is sampled.
func (s *Span) RecordError(err error) {
	if s == nil || err == nil {
		return
	}
	if s.rec != nil && s.live() == nil {
		return // ended
	}
	class := ErrorClass(err)
	msg := err.Error()
	stack := callerStack(2)
	if r := s.live(); r != nil {
		r.Status, r.ErrorType = schemas.StatusError, class
		s.AddEvent("exception", "exception.type", class, "exception.message", msg)
	}
	s.a.emit(Event{Type: schemas.EventException, Name: class, Message: msg, Stack: stack}, s)
}

// ErrorClass names an error's type the way alert signatures group it: the innermost wrapped
// error's type, e.g. "*net.OpError" or "context.deadlineExceededError".
func ErrorClass(err error) string {
	for {
		next := errors.Unwrap(err)
		if multi, ok := err.(interface{ Unwrap() []error }); ok && next == nil {
			if errs := multi.Unwrap(); len(errs) > 0 && errs[0] != nil {
				next = errs[0] // errors.Join and multi-%w: the first error names the failure
			}
		}
		if next == nil {
			break
		}
		err = next
	}
	t := reflect.TypeOf(err)
	if t.Name() == "" && t.Kind() == reflect.Pointer && t.Elem().Name() == "errorString" {
		return "error" // errors.New: no class of its own
	}
	return t.String()
}

func callerStack(skip int) string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(skip+1, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for {
		f, more := frames.Next()
		b.WriteString(f.Function)
		b.WriteString("\n\t")
		b.WriteString(f.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(f.Line))
		b.WriteByte('\n')
		if !more {
			break
		}
	}
	return b.String()
}
