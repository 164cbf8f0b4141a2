package handlespace

// expiryHeap is a binary min-heap of elements ordered by Expiry.
type expiryHeap []*Element
