package tunnel

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

func TestOpenRejectsBadInput(t *testing.T) {
	t.Parallel()
	rc := &rest.Config{Host: "https://127.0.0.1:1"}
	client := fake.NewClientset()
	good := Target{Namespace: "ns", Selector: "app=db", Port: 5432}
	tests := []struct {
		name   string
		cfg    Config
		target Target
		want   string
	}{
		{"no rest config", Config{Client: client}, good, "REST config"},
		{"no client", Config{REST: rc}, good, "client"},
		{"no namespace", Config{REST: rc, Client: client}, Target{Selector: "a=b", Port: 1}, "namespace"},
		{"pod and selector", Config{REST: rc, Client: client}, Target{Namespace: "ns", Pod: "p", Selector: "a=b", Port: 1}, "exactly one"},
		{"neither pod nor selector", Config{REST: rc, Client: client}, Target{Namespace: "ns", Port: 1}, "exactly one"},
		{"no port", Config{REST: rc, Client: client}, Target{Namespace: "ns", Pod: "p"}, "pod port"},
		{"port too big", Config{REST: rc, Client: client}, Target{Namespace: "ns", Pod: "p", Port: 70000}, "pod port"},
		{"bad local port", Config{REST: rc, Client: client, LocalPort: -1}, good, "local port"},
		{"bad selector", Config{REST: rc, Client: client}, Target{Namespace: "ns", Selector: "a in (", Port: 1}, "selector"},
		{"no pod", Config{REST: rc, Client: client}, good, "no pods matching"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tun, err := Open(context.Background(), tt.cfg, tt.target)
			if err == nil {
				_ = tun.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}
