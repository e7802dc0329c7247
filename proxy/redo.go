package proxy

// redoOnMaster runs again on the master a read a replica refused with
// -READONLY: FCALL_RO of a function that declares writes, or EVAL_RO of a
// script that does, is a write to a replica (processCommand judges a
// script by its flags), while a single Redis, the master, answers "Can not
// execute a script with write flag using *_ro command" (issue 13). It
// returns false when the read cannot be re-sent; the client then gets the
// replica's reply.
func (s *session) redoOnMaster(from *backend, p pending, req []byte) bool {
	if s.closed || len(req) == 0 {
		return false
	}
	b, _ := s.l.sharedBackend(s.l.master, from.proto)
	if b == nil {
		return false
	}
	s.account(from, &p)
	p.retried = true
	p.attempt = maxReadAttempts
	p.conditional = false
	s.retryOutstanding++
	b.send(p, req, true)
	return true
}
