package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Do sends one command to the Redis at addr on a fresh connection and
// returns its reply flattened to strings (an integer as its digits, an
// array as its elements, a nil as ""). A Redis error reply is an error. It
// is the few lines of RESP a test harness needs, so that it does not depend
// on the client library under test.
func Do(addr string, args ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	var out []string
	err = readReply(bufio.NewReader(c), &out)
	return out, err
}

// readReply reads one RESP2 reply, appending its scalars to out.
func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return errors.New("redistest: empty reply line")
	}
	switch body := line[1:]; line[0] {
	case '+', ':':
		*out = append(*out, body)
	case '-':
		return errors.New(body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("redistest: bulk length %q", body)
		}
		if n < 0 {
			*out = append(*out, "")
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		*out = append(*out, string(buf[:n]))
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("redistest: array length %q", body)
		}
		for range n {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("redistest: unexpected reply %q", line)
	}
	return nil
}
