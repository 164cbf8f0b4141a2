package proxy

// PipesHeld counts the splice pipes held by the event loops' connections
// (not the empty ones the loops keep for the next transfer).
func (p *Proxy) PipesHeld() int {
	p.mu.Lock()
	lps := p.loops
	p.mu.Unlock()
	if lps == nil {
		return 0
	}
	n := 0
	for _, lp := range lps.ls {
		lp.call(func() {
			for c := range lp.conns {
				for i := range c.d {
					if c.d[i].pipe[0] > 0 {
						n++
					}
				}
			}
		})
	}
	return n
}
