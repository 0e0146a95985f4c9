package pg

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// ScramIterations is PostgreSQL's default scram_iterations (RFC 7677's minimum).
const ScramIterations = 4096

// ScramSaltBytes is the salt length PostgreSQL itself uses.
const ScramSaltBytes = 16

// ScramKeys are the values a SCRAM-SHA-256 verifier stores (RFC 5802 section 3): the server keeps
// StoredKey and ServerKey, from which the password cannot be recovered short of brute force.
type ScramKeys struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// DeriveScramKeys computes the keys of a password. The password must already be SASLprep
// normalised; the passwords stackblaze generates are base64url ASCII, for which SASLprep is the
// identity.
func DeriveScramKeys(password string, salt []byte, iterations int) (ScramKeys, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return ScramKeys{}, fmt.Errorf("derive scram keys: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	return ScramKeys{
		Salt:       append([]byte(nil), salt...),
		Iterations: iterations,
		StoredKey:  stored[:],
		ServerKey:  hmacSHA256(salted, []byte("Server Key")),
	}, nil
}

// Verifier is the keys in the form PostgreSQL stores in pg_authid.rolpassword and accepts in
// ALTER ROLE ... PASSWORD: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
func (k ScramKeys) Verifier() string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", k.Iterations, b64(k.Salt), b64(k.StoredKey), b64(k.ServerKey))
}

// ScramVerifier computes a SCRAM-SHA-256 verifier for password with a fresh random salt, so that
// only the verifier, never the password, is sent to the server (and to its log).
func ScramVerifier(password string) (string, error) {
	salt := make([]byte, ScramSaltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("generate salt: %w", err)
	}
	k, err := DeriveScramKeys(password, salt, ScramIterations)
	if err != nil {
		return "", err
	}
	return k.Verifier(), nil
}

// VerifierMatches tells whether verifier (as Verifier writes it) is one of password's.
func VerifierMatches(verifier, password string) bool {
	var iterations int
	rest, ok := strings.CutPrefix(verifier, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iter, salt64, ok := strings.Cut(params, ":")
	if !ok {
		return false
	}
	if _, err := fmt.Sscanf(iter, "%d", &iterations); err != nil || iterations < 1 {
		return false
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return false
	}
	k, err := DeriveScramKeys(password, salt, iterations)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(k.Verifier()), []byte(verifier)) == 1 && keys != ""
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
