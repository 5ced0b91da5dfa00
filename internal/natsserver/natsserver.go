// Package natsserver runs an embedded nats-server with JetStream: the
// "embedded default" of `paypipe serve` and the real broker every test uses.
//
// The server is configured for payments, not for benchmarks: file storage and
// sync_interval "always" unless the caller opts out (JetStream's default fsyncs
// only every two minutes, so an acknowledged message can be lost on power loss;
// see shared/RELIABILITY.md §0). Stop and Start on the same StoreDir model a
// broker crash and restart, which the fault tests rely on.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config describes one embedded server. The zero value is not usable: StoreDir
// is required so that a restart finds its streams again.
type Config struct {
	// StoreDir is where JetStream keeps its file store.
	StoreDir string
	// Host defaults to 127.0.0.1: the embedded server is never exposed by default.
	Host string
	// Port 0 picks a free port on first start; restarts reuse the port picked.
	Port int
	// DefaultSync keeps JetStream's default fsync interval (2 min) instead of
	// fsyncing every write. Only benchmarks that compare the two set it.
	DefaultSync bool
	// StartTimeout bounds how long Start waits for the server to accept clients.
	StartTimeout time.Duration
}

// Server is an embedded nats-server that can be stopped and started again on
// the same store and port.
type Server struct {
	cfg Config
	srv *server.Server
}

// New validates cfg and returns a server that is not yet running.
func New(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.Port == 0 {
		p, err := freePort(cfg.Host)
		if err != nil {
			return nil, err
		}
		cfg.Port = p
	}
	return &Server{cfg: cfg}, nil
}

// Start runs the server and waits until it accepts connections.
func (s *Server) Start() error {
	if s.srv != nil {
		return errors.New("natsserver: already running")
	}
	if err := os.MkdirAll(s.cfg.StoreDir, 0o750); err != nil {
		return fmt.Errorf("natsserver: store dir: %w", err)
	}
	opts := &server.Options{
		ServerName: "paypipe-embedded",
		Host:       s.cfg.Host,
		Port:       s.cfg.Port,
		JetStream:  true,
		StoreDir:   s.cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// Big enough for the relay's atomic batches of up to 1000 messages.
		MaxPayload: 8 << 20,
	}
	if !s.cfg.DefaultSync {
		opts.SyncAlways = true
		opts.SyncInterval = 2 * time.Minute
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natsserver: new: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(s.cfg.StartTimeout) {
		srv.Shutdown()
		return fmt.Errorf("natsserver: not ready after %s", s.cfg.StartTimeout)
	}
	s.srv = srv
	return nil
}

// Stop shuts the server down and waits for it to finish. Clients see their
// connection drop, as with a crashed broker; the store stays on disk.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart stops the server and starts it again on the same store and port.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// URL is the client URL (nats://host:port); stable across restarts.
func (s *Server) URL() string {
	return fmt.Sprintf("nats://%s", net.JoinHostPort(s.cfg.Host, fmt.Sprint(s.cfg.Port)))
}

// Running reports whether the server is up.
func (s *Server) Running() bool { return s.srv != nil && s.srv.Running() }

// SyncAlways reports whether the server fsyncs every write.
func (s *Server) SyncAlways() bool { return !s.cfg.DefaultSync }

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("natsserver: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
