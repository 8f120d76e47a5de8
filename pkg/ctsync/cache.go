package ctsync

import (
	"sync"
	"time"
)

// Cache is a standby's copy of the active replica's conntrack table, outside the kernel. It is
// safe for concurrent use: the stream writes it, the takeover reads it.
type Cache struct {
	mu      sync.Mutex
	entries map[Key]cached
	// gen counts full dumps; an entry carries the generation of the dump (or the events after
	// it) that last wrote it, and DumpEnd drops those of an older generation.
	gen     uint64
	dumping bool
}

type cached struct {
	e       Entry
	expires time.Time
	gen     uint64
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{entries: map[Key]cached{}} }

// Apply applies one message of the stream received at now. It returns true when the message was
// an entry's (Upsert or Destroy), for the metrics.
func (c *Cache) Apply(m Message, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Type {
	case MsgUpsert:
		c.entries[m.Entry.Key()] = cached{e: m.Entry, expires: now.Add(time.Duration(m.Entry.Timeout) * time.Second), gen: c.gen}
		return true
	case MsgDestroy:
		delete(c.entries, m.Entry.Key())
		return true
	case MsgDumpBegin:
		c.gen++
		c.dumping = true
	case MsgDumpEnd:
		if c.dumping {
			for k, v := range c.entries {
				if v.gen < c.gen {
					delete(c.entries, k)
				}
			}
		}
		c.dumping = false
	}
	return false
}

// Expire drops the entries whose timeout ran out by now and returns how many.
func (c *Cache) Expire(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.entries {
		if !v.expires.After(now) {
			delete(c.entries, k)
			n++
		}
	}
	return n
}

// Len is the number of entries held (expired ones included until Expire).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Entries returns the entries alive at now, each with Timeout set to the whole seconds it has
// left (at least 1).
func (c *Cache) Entries(now time.Time) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Entry, 0, len(c.entries))
	for _, v := range c.entries {
		left := v.expires.Sub(now)
		if left <= 0 {
			continue
		}
		e := v.e
		e.Timeout = uint32((left + time.Second - 1) / time.Second)
		out = append(out, e)
	}
	return out
}

// Reset empties the cache (after its entries were committed).
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.dumping = false
}
