package loadgen

import "fmt"

// Class is the outcome of a call. Successes and each kind of failure are counted apart, because a
// consensus benchmark is as much about how a system fails (who answers "not leader", who times out,
// for how long) as about how fast it succeeds. Nothing is dropped: every call ends in one class.
type Class uint8

// Outcome classes.
const (
	ClassOK          Class = iota // done: a write applied, a read answered with a value
	ClassNotFound                 // a read of a key that has no value: a success, counted apart
	ClassTimeout                  // no answer within --timeout (or the server said it timed out)
	ClassNotLeader                // the replica is not the leader and did not forward (redirect or hint)
	ClassConnection               // could not connect, or the connection broke before the answer
	ClassBusy                     // the server shed load (429, Busy)
	ClassUnavailable              // no leader or no quorum (503, Unavailable)
	ClassRejected                 // the server refused the request itself (400, 413, BadRequest, TooLarge)
	ClassServer                   // any other error status or unexpected answer
	numClasses
)

var classNames = [numClasses]string{"ok", "not_found", "timeout", "not_leader", "connection", "busy",
	"unavailable", "rejected", "server"}

// String is the class as summary.json and history.jsonl spell it.
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Success reports whether the call did what was asked; its latency goes into the latency histogram,
// while a failure's goes into the error histogram, so fast failures cannot flatter the percentiles.
func (c Class) Success() bool { return c == ClassOK || c == ClassNotFound }

// numOps is the number of kv.Op values (put, get, delete); ops index arrays as op-1.
const numOps = 3

var opNames = [numOps]string{"put", "get", "delete"}

// Call is one request on its way through the generator. The dispatcher fills Step; the worker fills
// Key and Value; the target stamps SentNs when the request goes onto the wire, and DoneNs, Class and
// Err when it completes, then hands the call back on the done channel it was given. A call belongs to
// exactly one goroutine at a time, passed along by channel sends, so its fields need no lock.
type Call struct {
	Step
	Key   []byte
	Value []byte // the value written (puts only)

	SentNs int64 // actual send time on the run clock (ns)
	DoneNs int64 // completion time on the run clock (ns)
	Class  Class
	Err    error // detail of a failure, for the first few error messages a run prints

	// KeepOutput asks the target to copy a read's value into Output (for the history file); off
	// otherwise, so a plain run copies nothing.
	KeepOutput bool
	Output     []byte
}

// LatencyNs is completion minus intended send: what a user of the service sees.
func (c *Call) LatencyNs() int64 { return c.DoneNs - c.DueNs }

// ServiceNs is completion minus actual send: what a closed-loop benchmark would report.
func (c *Call) ServiceNs() int64 { return c.DoneNs - c.SentNs }

// LagNs is actual minus intended send: how late the generator was.
func (c *Call) LagNs() int64 { return c.SentNs - c.DueNs }

func (c *Call) reset() {
	c.Step = Step{}
	c.Key, c.Value, c.Output = c.Key[:0], c.Value[:0], c.Output[:0]
	c.SentNs, c.DoneNs, c.Class, c.Err, c.KeepOutput = 0, 0, ClassOK, nil, false
}

// Target sends calls to the system under test. Implementations own their connections and their
// goroutines; Go may be called from several workers at once.
type Target interface {
	// Go issues c and, exactly once, stamps c.SentNs, c.DoneNs, c.Class (and c.Err) and sends c on
	// done. The caller guarantees done has room for every call it has outstanding, so a target never
	// blocks delivering. Go itself should return quickly: it may write to a socket buffer, but must
	// not wait for the answer.
	Go(c *Call, done chan<- *Call)
	// Close releases connections; calls still outstanding complete with ClassConnection.
	Close() error
}
