// Command ociimage writes a container image as an OCI image-layout tar archive, the format
// `ctr images import` reads, from uncompressed layer tarballs and the image's configuration. The
// test bed builds its images with it, without a container engine or a registry: the database
// images from a Debian root filesystem (hack/testbed/images.sh), the stackblaze image and the
// pause image from a static binary.
//
//	ociimage -name stackblaze/postgres:17 -layer rootfs.tar -entrypoint /usr/local/bin/x \
//	  -env PATH=/usr/bin:/bin -user 999:999 -stop-signal SIGINT -out postgres-17.oci.tar
//
// The name is written fully qualified (as the kubelet and the container runtime normalise an
// image reference), so that a pod that names the short form finds the imported image.
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/distribution/reference"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

func main() {
	var layers, env, entrypoint, cmd stringList
	name := flag.String("name", "", "image reference, like stackblaze/postgres:17")
	out := flag.String("out", "", "the archive to write")
	user := flag.String("user", "", "user[:group] the container runs as")
	workdir := flag.String("workdir", "", "working directory")
	stopSignal := flag.String("stop-signal", "", "signal that stops the container, like SIGINT")
	flag.Var(&layers, "layer", "an uncompressed layer tarball (repeatable, bottom first)")
	flag.Var(&env, "env", "NAME=value (repeatable)")
	flag.Var(&entrypoint, "entrypoint", "one word of the entrypoint (repeatable)")
	flag.Var(&cmd, "cmd", "one word of the default command (repeatable)")
	flag.Parse()
	if *name == "" || *out == "" || len(layers) == 0 {
		fmt.Fprintln(os.Stderr, "usage: ociimage -name REF -out FILE -layer TAR [-layer TAR ...] [options]")
		os.Exit(2)
	}
	if err := write(*name, *out, layers, imageConfig{
		User: *user, Env: env, Entrypoint: entrypoint, Cmd: cmd, WorkingDir: *workdir, StopSignal: *stopSignal,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

type imageConfig struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
	StopSignal string   `json:"StopSignal,omitempty"`
}

func write(name, out string, layers []string, cfg imageConfig) error {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return fmt.Errorf("image name %q: %w", name, err)
	}
	ref = reference.TagNameOnly(ref)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	now := time.Unix(0, 0)
	addBytes := func(path string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	addBlob := func(b []byte) (string, error) {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		return d, addBytes("blobs/sha256/"+hex.EncodeToString(sum[:]), b)
	}

	var layerDescs []descriptor
	var diffIDs []string
	for _, l := range layers {
		d, size, err := digestFile(l)
		if err != nil {
			return err
		}
		lf, err := os.Open(l)
		if err != nil {
			return err
		}
		err = tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + strings.TrimPrefix(d, "sha256:"), Mode: 0o644, Size: size, ModTime: now, Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.Copy(tw, lf)
		}
		lf.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", l, err)
		}
		layerDescs = append(layerDescs, descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: d, Size: size})
		diffIDs = append(diffIDs, d)
	}

	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	configDigest, err := addBlob(config)
	if err != nil {
		return err
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: configDigest, Size: int64(len(config))},
		"layers":        layerDescs,
	})
	manifestDigest, err := addBlob(manifest)
	if err != nil {
		return err
	}
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []descriptor{{
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Digest:    manifestDigest,
			Size:      int64(len(manifest)),
			Platform:  &platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{
				"io.containerd.image.name":          ref.String(),
				"org.opencontainers.image.ref.name": ref.(reference.Tagged).Tag(),
			},
		}},
	})
	if err := addBytes("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := addBytes("index.json", index); err != nil {
		return err
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func digestFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}
