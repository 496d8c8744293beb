package msg

// MaxChannelLen is the longest channel name, in bytes.
const MaxChannelLen = 128

// ValidChannel reports whether name is a valid channel name: 1 to 128 bytes
// of A-Z a-z 0-9 _ . : @ -.
func ValidChannel(name string) bool {
	if len(name) == 0 || len(name) > MaxChannelLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !channelByte[name[i]] {
			return false
		}
	}
	return true
}

var channelByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_.:@-" {
		t[c] = true
	}
	return t
}()

// MaxEpochLen is the longest epoch, in bytes.
const MaxEpochLen = 16

// ValidEpoch reports whether e is a valid epoch: 1 to 16 bytes of a-z 0-9.
func ValidEpoch(e string) bool {
	if len(e) == 0 || len(e) > MaxEpochLen {
		return false
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
