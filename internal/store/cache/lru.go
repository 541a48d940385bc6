package cache

import (
	"container/list"
	"sync"
	"time"

	"github.com/phivault/tokenizer/internal/tokenizer"
)

// lru is a bounded least-recently-used map of mappings with a per-entry lifetime.
type lru struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	ll    *list.List
	items map[string]*list.Element
}

// entry is one index's entry. A static mapping's two entries (by token digest, by
// fingerprint) share one copy of it.
type entry struct {
	key     string
	m       *tokenizer.Mapping
	expires time.Time // cache lifetime (not the mapping's own expiry)
}

func newLRU(max int, ttl time.Duration) *lru {
	return &lru{max: max, ttl: ttl, ll: list.New(), items: map[string]*list.Element{}}
}

// get returns the entry if present, fresh, and the mapping is not expired.
func (c *lru) get(key string, now time.Time) (tokenizer.Mapping, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return tokenizer.Mapping{}, false
	}
	e := el.Value.(*entry)
	if now.After(e.expires) || e.m.ExpiresAt != nil && !e.m.ExpiresAt.After(now) {
		c.ll.Remove(el)
		delete(c.items, key)
		return tokenizer.Mapping{}, false
	}
	c.ll.MoveToFront(el)
	return *e.m, true
}

func (c *lru) put(key string, m *tokenizer.Mapping, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &entry{key: key, m: m, expires: now.Add(c.ttl)}
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&entry{key: key, m: m, expires: now.Add(c.ttl)})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*entry).key)
	}
}

func (c *lru) remove(key string) (tokenizer.Mapping, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return tokenizer.Mapping{}, false
	}
	c.ll.Remove(el)
	delete(c.items, key)
	return *el.Value.(*entry).m, true
}

func (c *lru) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	c.items = map[string]*list.Element{}
}

func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
