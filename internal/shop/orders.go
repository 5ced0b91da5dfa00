package shop

import (
	"sync"

	"github.com/google/uuid"
)

// orderCache remembers which checkout an order ref named, so that the order
// page's polls cost one API call each. It is a cache, never the truth: on a
// miss (another replica, a restart, an eviction) the shop finds the checkout
// again through the API by its return URL. It holds at most max entries and
// forgets the oldest first.
type orderCache struct {
	mu    sync.Mutex
	max   int
	ids   map[string]uuid.UUID
	order []string // insertion order, oldest first, for eviction
}

func newOrderCache(max int) *orderCache {
	return &orderCache{max: max, ids: make(map[string]uuid.UUID, max)}
}

func (c *orderCache) get(ref string) (uuid.UUID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[ref]
	return id, ok
}

func (c *orderCache) put(ref string, id uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.ids[ref]; ok {
		c.ids[ref] = id
		return
	}
	for len(c.order) >= c.max {
		delete(c.ids, c.order[0])
		c.order = c.order[1:]
	}
	c.ids[ref] = id
	c.order = append(c.order, ref)
}
