package natsserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/internal/natsserver"
)

// A restart on the same store keeps the stream and its duplicate window: a
// re-send of an id stored before the restart is acknowledged as a duplicate.
func TestRestartKeepsStreamAndDedup(t *testing.T) {
	t.Parallel()
	srv, err := natsserver.New(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if !srv.SyncAlways() {
		t.Fatal("embedded server must fsync every write by default")
	}
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "r.x", []byte("1"), jetstream.WithMsgID("id-1"))
	if err != nil || ack.Duplicate {
		t.Fatalf("first publish: %+v %v", ack, err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	var again *jetstream.PubAck
	for again == nil {
		again, err = js.Publish(ctx, "r.x", []byte("1"), jetstream.WithMsgID("id-1"))
		if err != nil && ctx.Err() != nil {
			t.Fatalf("publish after restart: %v", err)
		}
	}
	if !again.Duplicate || again.Sequence != ack.Sequence {
		t.Fatalf("re-send after restart: %+v, want duplicate of seq %d", again, ack.Sequence)
	}
	if srv.URL() == "" || !srv.Running() {
		t.Fatal("server not running after restart")
	}
}

func TestNewNeedsStoreDir(t *testing.T) {
	t.Parallel()
	if _, err := natsserver.New(natsserver.Config{}); err == nil {
		t.Fatal("New accepted an empty StoreDir")
	}
}
