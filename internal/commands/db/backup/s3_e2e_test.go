package backup_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// fakeS3 serves an in-memory S3 store over TLS at host (the node's address, which the database
// pods reach), with a certificate of its own CA. The store is a stand-in; pgBackRest, which talks
// to it from the database containers, is real.
func fakeS3(t *testing.T, host string) (endpoint string, caPEM []byte, backend *s3mem.Backend) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// pgBackRest matches the host against the certificate's DNS names only.
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		DNSNames: []string{host}, IPAddresses: []net.IP{net.ParseIP(host)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(caPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	backend = s3mem.New()
	if err := backend.CreateBucket("backups"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gofakes3.New(backend).Server())
	ln, err := net.Listen("tcp4", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://"), caPEM, backend
}

// TestE2EBackupsInS3 keeps backups in an S3-compatible bucket (the backup_s3_* settings, from the
// user's config file): create writes no backup volume, WAL and backups go to the bucket, and
// restore --into reads the source's backups from there without copying anything.
func TestE2EBackupsInS3(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 10*time.Minute)
	endpoint, caPEM, store := fakeS3(t, env.NodeIP(t))

	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "stackblaze-backup-s3"},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "test-secret"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "s3-ca"}, Data: map[string]string{"ca.crt": string(caPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf("backup_s3_bucket: backups\nbackup_s3_endpoint: %q\nbackup_s3_uri_style: path\nbackup_s3_ca_configmap: s3-ca\n", endpoint)
	run := func(args ...string) testbed.Result {
		t.Helper()
		cmd := env.Command(t, ns, args...)
		// The user's own config file: a project's .stackblaze.yaml may not say where backups go.
		xdg := ""
		for _, kv := range cmd.Env {
			if v, ok := strings.CutPrefix(kv, "XDG_CONFIG_HOME="); ok {
				xdg = v
			}
		}
		if xdg == "" {
			t.Fatal("the command has no XDG_CONFIG_HOME")
		}
		userFile := filepath.Join(xdg, "stackblaze", "config.yaml")
		if err := os.MkdirAll(filepath.Dir(userFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(userFile, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := testbed.Result{Stdout: stdout.String(), Stderr: stderr.String()}
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			r.Code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if r.Code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	psqlIn := func(db, sql string) string { t.Helper(); return superuserSQL(t, env, ns, db, sql) }

	c := run("db", "create", "s3db", "--plan", "standard")
	if strings.Contains(c.Stderr, "not ready") {
		t.Fatalf("create did not prepare the repository in the bucket:\n%s", c.Stderr)
	}
	if _, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "backup-s3db-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a backup volume with backups in S3 (get: %v)", err)
	}
	psqlIn("s3db", "create table t (i int)")
	psqlIn("s3db", "insert into t select generate_series(1, 5)")
	b := run("db", "backup", "create", "s3db", "-o", "json")
	var created struct {
		Backup struct{ ID string } `json:"backup"`
	}
	if err := json.Unmarshal([]byte(b.Stdout), &created); err != nil || created.Backup.ID == "" {
		t.Fatalf("backup create: %v\n%s", err, b.Stdout)
	}
	psqlIn("s3db", "insert into t select generate_series(6, 9)")
	var list listDoc
	if err := json.Unmarshal([]byte(run("db", "backup", "list", "s3db", "-o", "json").Stdout), &list); err != nil ||
		len(list.Backups) != 1 || list.Backups[0].ID != created.Backup.ID {
		t.Fatalf("backup list: %v %+v", err, list)
	}

	run("db", "restore", "s3db", "--backup", created.Backup.ID, "--into", "s3copy")
	if got := psqlIn("s3copy", "select count(*) from t"); got != "5" {
		t.Errorf("s3copy: %s rows, want the backup's 5", got)
	}
	if got := psqlIn("s3db", "select count(*) from t"); got != "9" {
		t.Errorf("s3db after restore --into: %s rows, want 9", got)
	}
	run("db", "backup", "create", "s3copy")

	// Both databases' repositories are in the bucket, under the namespace's path.
	for _, stanza := range []string{"s3db", "s3copy"} {
		prefix := "stackblaze/" + ns + "/backup/" + stanza + "/"
		objs, err := store.ListBucket("backups", &gofakes3.Prefix{HasPrefix: true, Prefix: prefix}, gofakes3.ListBucketPage{})
		if err != nil || len(objs.Contents) == 0 {
			t.Errorf("nothing under %s in the bucket (%v)", prefix, err)
		}
	}
}
