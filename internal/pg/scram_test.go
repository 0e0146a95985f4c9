package pg

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

// TestScramKeysRFC7677 checks the derived keys against the exchange in RFC 7677 section 3
// (user "user", password "pencil"): the server signature computed from our ServerKey must equal
// the RFC's v=, and the RFC's client proof must recover a ClientKey whose hash is our StoredKey.
func TestScramKeysRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	k, err := DeriveScramKeys("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	auth := []byte("n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
	wantV := "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	if got := base64.StdEncoding.EncodeToString(hmacSHA256(k.ServerKey, auth)); got != wantV {
		t.Errorf("server signature %s, want %s", got, wantV)
	}
	proof, _ := base64.StdEncoding.DecodeString("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	clientSig := hmacSHA256(k.StoredKey, auth)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	if sum := sha256.Sum256(clientKey); !bytes.Equal(sum[:], k.StoredKey) {
		t.Errorf("the RFC's client proof does not match our StoredKey")
	}
	want := "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" +
		base64.StdEncoding.EncodeToString(k.StoredKey) + ":" + base64.StdEncoding.EncodeToString(k.ServerKey)
	if k.Verifier() != want {
		t.Errorf("verifier %s, want %s", k.Verifier(), want)
	}
}

var verifierRE = regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$`)

func TestScramVerifierFreshSalt(t *testing.T) {
	a, err := ScramVerifier("secret")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ScramVerifier("secret")
	if !verifierRE.MatchString(a) {
		t.Errorf("verifier %q has not PostgreSQL's format", a)
	}
	if a == b {
		t.Errorf("two verifiers of one password share a salt")
	}
	if bytes.Contains([]byte(a), []byte("secret")) {
		t.Errorf("verifier contains the password")
	}
}

func TestVerifierMatches(t *testing.T) {
	t.Parallel()
	v, err := ScramVerifier("right")
	if err != nil {
		t.Fatal(err)
	}
	if !VerifierMatches(v, "right") {
		t.Errorf("%s does not match its own password", v)
	}
	for _, tc := range []struct{ verifier, password string }{
		{v, "wrong"},
		{"right", "right"},
		{"SCRAM-SHA-256$x:AAAA$a:b", "right"},
		{strings.Replace(v, "4096:", "4095:", 1), "right"},
	} {
		if VerifierMatches(tc.verifier, tc.password) {
			t.Errorf("VerifierMatches(%q, %q) = true", tc.verifier, tc.password)
		}
	}
}
