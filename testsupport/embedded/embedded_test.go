package embedded

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A broker told to advertise another address gives that address in its
// metadata, and clients reach it there: what a broker in a container with
// a published port needs.
func TestAdvertisedAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	adv := "localhost:" + strconv.Itoa(port)
	b, err := Start(Options{Port: port, Host: "127.0.0.1", Advertise: adv})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Addr != adv {
		t.Fatalf("broker says it listens on %s, want %s", b.Addr, adv)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(adv), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).BrokerMetadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Host != "localhost" || int(md.Brokers[0].Port) != port {
		t.Fatalf("metadata brokers %+v, want localhost:%d", md.Brokers, port)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce through the advertised address: %v", err)
	}
}
