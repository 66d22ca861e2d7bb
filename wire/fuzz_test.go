package wire

import (
	"bytes"
	"testing"

	"github.com/sofadb/sofadb/paxos"
)

// FuzzDecodeEntry decodes arbitrary bytes as an entry: it must not panic, and anything it accepts
// must re-encode to exactly the bytes it consumed (one encoding per entry).
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		if len(e.Cmds) <= 64 && e.Size() < 1<<16 {
			f.Add(AppendEntry(nil, &e))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var e paxos.Entry
		n, err := DecodeEntry(in, &e)
		if err != nil {
			return
		}
		if again := AppendEntry(nil, &e); !bytes.Equal(again, in[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in[:n], again)
		}
	})
}
