package peerwire

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"github.com/sofadb/sofadb/paxos"
	"github.com/sofadb/sofadb/wire"
)

func TestEntryRoundTrip(t *testing.T) {
	for _, want := range sampleEntries() {
		t.Run(describeEntry(&want), func(t *testing.T) {
			enc := AppendEntry([]byte("prefix"), &want)[len("prefix"):]
			var got paxos.Entry
			n, err := DecodeEntry(enc, &got)
			if err != nil || n != len(enc) {
				t.Fatalf("DecodeEntry = %d, %v; want %d, nil", n, err, len(enc))
			}
			if !sameEntry(&got, &want) {
				t.Fatalf("decoded %s, want %s", describeEntry(&got), describeEntry(&want))
			}
			if again := AppendEntry(nil, &got); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, enc)
			}
		})
	}
}

// Entries stored back to back must decode one at a time, each reporting its own length.
func TestEntryBackToBack(t *testing.T) {
	entries := sampleEntries()
	var buf []byte
	for i := range entries {
		buf = AppendEntry(buf, &entries[i])
	}
	var got paxos.Entry
	for i := range entries {
		n, err := DecodeEntry(buf, &got)
		if err != nil || !sameEntry(&got, &entries[i]) {
			t.Fatalf("entry %d: err %v, got %s", i, err, describeEntry(&got))
		}
		buf = buf[n:]
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left over", len(buf))
	}
}

// Every proper prefix of an encoding is refused (as truncated, or as a count the rest cannot hold):
// a torn record never decodes.
func TestEntryTruncated(t *testing.T) {
	e := paxos.Entry{Slot: 300, Ballot: paxos.MakeBallot(2, 1), Chosen: true, Cmds: batch(3, 4, 5)}
	enc := AppendEntry(nil, &e)
	for i := range len(enc) {
		var got paxos.Entry
		_, err := DecodeEntry(enc[:i], &got)
		if !errors.Is(err, wire.ErrTruncated) && !errors.Is(err, wire.ErrCount) {
			t.Fatalf("prefix of %d bytes: err %v, want wire.ErrTruncated or wire.ErrCount", i, err)
		}
	}
}

func TestEntryMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"varint overflow", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0}, wire.ErrVarint},
		{"padded varint", []byte{0x81, 0x00, 1, 0, 0}, wire.ErrVarint},
		{"chosen flag 2", []byte{1, 1, 2, 0}, wire.ErrRange},
		{"count beyond input", []byte{1, 1, 0, 2, 1, 1, 1, 0, 0}, wire.ErrCount},
		{"huge count", []byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, wire.ErrCount},
		{"data longer than input", []byte{1, 1, 0, 1, 1, 1, 9, 0}, wire.ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e paxos.Entry
			_, err := DecodeEntry(tc.in, &e)
			if !errors.Is(err, tc.want) || !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("err %v, want %v (and wire.ErrMalformed)", err, tc.want)
			}
		})
	}
}

// Decoded keys and values alias the input and are capped, so appending to one cannot overwrite
// the next field.
func TestEntryAliasesInput(t *testing.T) {
	e := paxos.Entry{Cmds: []paxos.Command{{ClientID: 1, Data: []byte("key")}, {ClientID: 2, Data: []byte("value")}}}
	enc := AppendEntry(nil, &e)
	var got paxos.Entry
	if _, err := DecodeEntry(enc, &got); err != nil {
		t.Fatal(err)
	}
	k := got.Cmds[0].Data
	start := uintptr(unsafe.Pointer(unsafe.SliceData(enc)))
	if p := uintptr(unsafe.Pointer(&k[0])); p < start || p >= start+uintptr(len(enc)) {
		t.Fatal("key does not alias the input")
	}
	_ = append(k, 'X')
	if !bytes.Equal(got.Cmds[1].Data, []byte("value")) {
		t.Fatalf("append to one command's data overwrote the next: %q", got.Cmds[1].Data)
	}
}

// Decoding a smaller batch into a struct that held a larger one reuses its storage.
func TestEntryReusesCapacity(t *testing.T) {
	big := paxos.Entry{Cmds: batch(10, 1, 1)}
	small := paxos.Entry{Slot: 9, Cmds: batch(2, 3, 3)}
	var got paxos.Entry
	if _, err := DecodeEntry(AppendEntry(nil, &big), &got); err != nil {
		t.Fatal(err)
	}
	before := unsafe.SliceData(got.Cmds)
	if _, err := DecodeEntry(AppendEntry(nil, &small), &got); err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(got.Cmds) != before || !sameEntry(&got, &small) {
		t.Fatalf("storage not reused or wrong decode: %s", describeEntry(&got))
	}
}
