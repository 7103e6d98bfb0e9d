// streamclient drives hull-cri's streaming server with the real Kubernetes Go clients
// (client-go's remotecommand over SPDY and WebSocket, portforward over SPDY and over SPDY
// tunnelled through WebSocket), so the Rust protocol code is tested against the peers
// kubelet, kubectl and critest use.
//
//	streamclient exec -url URL [-ws] [-tty] [-stdin] [-resize 24x80,30x100]
//	    stdio is the process's; exits with the remote exit code, 100 on other errors.
//	streamclient portforward -url URL [-ws] -port N -msg TEXT
//	    forwards a local port to N, sends TEXT, half-closes, prints what came back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: streamclient exec|portforward ...")
	}
	var err error
	switch os.Args[1] {
	case "exec":
		err = runExec(os.Args[2:])
	case "portforward":
		err = runPortForward(os.Args[2:])
	default:
		fail("unknown subcommand " + os.Args[1])
	}
	var code exec.CodeExitError
	if errors.As(err, &code) {
		os.Exit(code.Code)
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "streamclient:", msg)
	os.Exit(100)
}

// sizes hands out the terminal sizes given on the command line, 300 ms apart.
type sizes struct{ list []remotecommand.TerminalSize }

func (s *sizes) Next() *remotecommand.TerminalSize {
	if len(s.list) == 0 {
		return nil
	}
	next := s.list[0]
	s.list = s.list[1:]
	if len(s.list) == 0 {
		// The last size is sent after a pause, so it arrives while the command runs.
		time.Sleep(300 * time.Millisecond)
	}
	return &next
}

func parseSizes(arg string) ([]remotecommand.TerminalSize, error) {
	var out []remotecommand.TerminalSize
	for _, one := range strings.Split(arg, ",") {
		if one == "" {
			continue
		}
		h, w, ok := strings.Cut(one, "x")
		rows, err1 := strconv.Atoi(h)
		cols, err2 := strconv.Atoi(w)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad size %q (want ROWSxCOLS)", one)
		}
		out = append(out, remotecommand.TerminalSize{Width: uint16(cols), Height: uint16(rows)})
	}
	return out, nil
}

func runExec(args []string) error {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	rawURL := fs.String("url", "", "streaming URL from Exec or Attach")
	ws := fs.Bool("ws", false, "WebSocket (v5.channel.k8s.io) instead of SPDY")
	tty := fs.Bool("tty", false, "terminal")
	stdin := fs.Bool("stdin", false, "send stdin")
	resize := fs.String("resize", "", "terminal sizes ROWSxCOLS,...")
	_ = fs.Parse(args)
	u, err := url.Parse(*rawURL)
	if err != nil {
		return err
	}
	config := &rest.Config{}
	var executor remotecommand.Executor
	if *ws {
		executor, err = remotecommand.NewWebSocketExecutor(config, "GET", u.String())
	} else {
		executor, err = remotecommand.NewSPDYExecutor(config, "POST", u)
	}
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{Stdout: os.Stdout, Tty: *tty}
	if !*tty {
		opts.Stderr = os.Stderr
	}
	if *stdin {
		opts.Stdin = os.Stdin
	}
	if *resize != "" {
		list, err := parseSizes(*resize)
		if err != nil {
			return err
		}
		opts.TerminalSizeQueue = &sizes{list: list}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return executor.StreamWithContext(ctx, opts)
}

func runPortForward(args []string) error {
	fs := flag.NewFlagSet("portforward", flag.ExitOnError)
	rawURL := fs.String("url", "", "streaming URL from PortForward")
	port := fs.Int("port", 0, "remote port")
	msg := fs.String("msg", "", "text to send")
	ws := fs.Bool("ws", false, "SPDY tunnelled through WebSocket (SPDY/3.1+portforward.k8s.io)")
	_ = fs.Parse(args)
	u, err := url.Parse(*rawURL)
	if err != nil {
		return err
	}
	var dialer httpstream.Dialer
	if *ws {
		dialer, err = portforward.NewSPDYOverWebsocketDialer(u, &rest.Config{})
		if err != nil {
			return err
		}
	} else {
		transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
		if err != nil {
			return err
		}
		dialer = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	}
	stop := make(chan struct{})
	ready := make(chan struct{})
	fw, err := portforward.New(dialer, []string{fmt.Sprintf("0:%d", *port)}, stop, ready, io.Discard, os.Stderr)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return fmt.Errorf("forwarding ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		return errors.New("forwarding not ready after 10 s")
	}
	ports, err := fw.GetPorts()
	if err != nil {
		return err
	}
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
	if err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(*msg)); err != nil {
		return err
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(conn)
	conn.Close()
	if err != nil {
		return fmt.Errorf("reading the echo: %v", err)
	}
	fmt.Print(string(got))
	close(stop)
	return <-done
}
