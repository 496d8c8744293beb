package msg

import "strconv"

// HistoryPage is what one page of a channel's history holds before it is
// encoded: the REST endpoint and the WebSocket history command build their
// answers (the members of [History]) with it, from messages the hub encoded
// once.
type HistoryPage struct {
	Channel, Epoch string
	// After is the request's after: the page's next when it holds no
	// message.
	After          uint64
	Oldest, Latest uint64
	// MaxBytes bounds the encoding: the page stops before a message that
	// would take it past MaxBytes (counting what b held already), though
	// it always holds the first. Zero means no bound.
	MaxBytes int
}

// AppendMembers appends the page's members, `"channel":...,"latest":N`,
// without braces, to b, with as many of the n messages as fit: at(i)
// returns message i's JSON envelope and offset. It returns b and how many
// messages it holds. next is the offset of the last message held, or After.
func (p *HistoryPage) AppendMembers(b []byte, n int, at func(i int) (envelope []byte, offset uint64)) ([]byte, int) {
	b = append(b, `"channel":"`...)
	b = append(b, p.Channel...)
	b = append(b, `","epoch":"`...)
	b = append(b, p.Epoch...)
	b = append(b, `","messages":[`...)
	next, held := p.After, 0
	for i := range n {
		env, off := at(i)
		if p.MaxBytes > 0 && i > 0 && len(b)+len(env) > p.MaxBytes {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, env...)
		next, held = off, i+1
	}
	b = append(b, `],"next":`...)
	b = strconv.AppendUint(b, next, 10)
	b = append(b, `,"oldest":`...)
	b = strconv.AppendUint(b, p.Oldest, 10)
	b = append(b, `,"latest":`...)
	b = strconv.AppendUint(b, p.Latest, 10)
	return b, held
}
