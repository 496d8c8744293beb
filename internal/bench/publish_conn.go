package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// connPublisher is the ClientConn client: one keep-alive HTTP/1.1
// connection, one request in flight. The request is encoded once; each
// publish writes it and parses the answer with net/http's own
// http.ReadResponse, redialling after an error or a "Connection: close".
// It is not safe for concurrent use.
type connPublisher struct {
	addr    string
	url     string
	timeout time.Duration
	req     []byte        // the whole request, written as it is
	method  *http.Request // tells ReadResponse what the answer is to

	conn net.Conn
	br   *bufio.Reader
}

func newConnPublisher(cfg PublishConfig, target string) *connPublisher {
	u, _ := url.Parse(target) // publishURL made it
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: duplex-bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
		u.RequestURI(), u.Host, len(cfg.Data))
	if cfg.Token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", cfg.Token)
	}
	b.WriteString("\r\n")
	b.Write(cfg.Data)
	return &connPublisher{
		addr: addr, url: target, timeout: cfg.Timeout, req: b.Bytes(),
		method: &http.Request{Method: http.MethodPost},
	}
}

func (c *connPublisher) publish(ctx context.Context) error {
	if c.conn == nil {
		d := net.Dialer{Timeout: c.timeout}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return fmt.Errorf("POST %s: %w", c.url, err)
	}
	resp, err := http.ReadResponse(c.br, c.method)
	if err != nil {
		c.close()
		return fmt.Errorf("POST %s: %w", c.url, err)
	}
	var status error
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		status = fmt.Errorf("POST %s: %s: %s", c.url, resp.Status, bytes.TrimSpace(body))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		c.close()
		return fmt.Errorf("POST %s: read answer: %w", c.url, err)
	}
	resp.Body.Close()
	if resp.Close {
		c.close()
	}
	return status
}

func (c *connPublisher) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
