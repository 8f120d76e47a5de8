package ctsync

import (
	"testing"
	"time"
)

func keys(es []Entry) map[Key]Entry {
	out := map[Key]Entry{}
	for _, e := range es {
		out[e.Key()] = e
	}
	return out
}

func TestCacheUpsertDestroy(t *testing.T) {
	c, now := NewCache(), time.Unix(1000, 0)
	c.Apply(Message{Type: MsgUpsert, Entry: snatEntry}, now)
	c.Apply(Message{Type: MsgUpsert, Entry: dnatEntry}, now)
	changed := snatEntry
	changed.TCP.State = 4 // FIN_WAIT: an UPDATE replaces the entry of the same key
	changed.Timeout = 120
	c.Apply(Message{Type: MsgUpsert, Entry: changed}, now)
	if got := keys(c.Entries(now)); len(got) != 2 || got[snatEntry.Key()].TCP.State != 4 {
		t.Fatalf("after two upserts of one key: %+v", got)
	}
	c.Apply(Message{Type: MsgDestroy, Entry: Entry{Proto: snatEntry.Proto, Orig: snatEntry.Orig}}, now)
	if got := keys(c.Entries(now)); len(got) != 1 || got[dnatEntry.Key()].Orig != dnatEntry.Orig {
		t.Fatalf("after DESTROY: %+v, want only the DNAT entry", got)
	}
	other := dnatEntry
	other.Zone = 0 // another zone is another entry
	c.Apply(Message{Type: MsgDestroy, Entry: other}, now)
	if c.Len() != 1 {
		t.Fatalf("a DESTROY of another zone removed the entry: %d left", c.Len())
	}
}

// TestCacheTimeout: an entry lives as long as the timeout it came with; Entries gives what is
// left (rounded up), Expire drops it when it ran out.
func TestCacheTimeout(t *testing.T) {
	c, now := NewCache(), time.Unix(1000, 0)
	c.Apply(Message{Type: MsgUpsert, Entry: dnatEntry}, now) // 117 s
	c.Apply(Message{Type: MsgUpsert, Entry: snatEntry}, now) // 431999 s
	if got := keys(c.Entries(now.Add(100*time.Second + time.Millisecond))); got[dnatEntry.Key()].Timeout != 17 {
		t.Fatalf("timeout left after 100.001 s: %d, want 17", got[dnatEntry.Key()].Timeout)
	}
	if n := c.Expire(now.Add(116 * time.Second)); n != 0 {
		t.Fatalf("expired %d entries before their timeout", n)
	}
	later := now.Add(117 * time.Second)
	if got := keys(c.Entries(later)); len(got) != 1 {
		t.Fatalf("Entries at the DNAT entry's timeout: %+v, want only the SNAT entry", got)
	}
	if n := c.Expire(later); n != 1 || c.Len() != 1 {
		t.Fatalf("Expire at the timeout: %d dropped, %d left; want 1, 1", n, c.Len())
	}
	// A refresh (an UPDATE, or a resync's dump) extends the timeout.
	c.Apply(Message{Type: MsgUpsert, Entry: dnatEntry}, later)
	if n := c.Expire(later.Add(116 * time.Second)); n != 0 || c.Len() != 2 {
		t.Fatalf("a refreshed entry expired: %d dropped, %d left", n, c.Len())
	}
}

// TestCacheResync: a full dump replaces the cache: what it does not carry is dropped at its end,
// what it carries (and events after it) stays; a dump that never ends drops nothing.
func TestCacheResync(t *testing.T) {
	c, now := NewCache(), time.Unix(1000, 0)
	c.Apply(Message{Type: MsgDumpBegin}, now)
	c.Apply(Message{Type: MsgUpsert, Entry: snatEntry}, now)
	c.Apply(Message{Type: MsgUpsert, Entry: dnatEntry}, now)
	c.Apply(Message{Type: MsgDumpEnd}, now)
	if c.Len() != 2 {
		t.Fatalf("after the first dump: %d entries", c.Len())
	}
	// The DNAT entry's DESTROY was lost (the stream broke); the next dump no longer has it.
	c.Apply(Message{Type: MsgDumpBegin}, now)
	c.Apply(Message{Type: MsgUpsert, Entry: snatEntry}, now)
	if c.Len() != 2 {
		t.Fatalf("entries dropped before the dump ended: %d left", c.Len())
	}
	c.Apply(Message{Type: MsgDumpEnd}, now)
	c.Apply(Message{Type: MsgUpsert, Entry: icmp6Entry}, now) // an event after the dump
	if got := keys(c.Entries(now)); len(got) != 2 || got[dnatEntry.Key()].Proto != 0 {
		t.Fatalf("after the resync: %+v, want the SNAT and the ICMPv6 entries", got)
	}
	// A stream that breaks inside a dump keeps the cache: the dump's end never came.
	c.Apply(Message{Type: MsgDumpBegin}, now)
	if c.Len() != 2 {
		t.Fatalf("a dump's beginning dropped entries: %d left", c.Len())
	}
	c.Reset()
	if c.Len() != 0 || len(c.Entries(now)) != 0 {
		t.Fatal("Reset left entries")
	}
	// A DumpEnd without its beginning (a stream joined in the middle) drops nothing.
	c.Apply(Message{Type: MsgUpsert, Entry: snatEntry}, now)
	c.Apply(Message{Type: MsgDumpEnd}, now)
	if c.Len() != 1 {
		t.Fatalf("a DumpEnd without DumpBegin dropped entries: %d left", c.Len())
	}
}
