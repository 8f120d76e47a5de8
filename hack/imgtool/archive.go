package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// epoch is every file's and the image's timestamp: with it, the same inputs give the same
// bytes, so an unchanged image keeps its ID and is neither rewritten nor re-imported.
var epoch = time.Unix(0, 0).UTC()

// Layer is one uncompressed layer tar and its digest (for an uncompressed layer the digest and
// the diff ID are the same).
type Layer struct {
	Source string // the directory it was packed from, for the image history
	Data   []byte
	Digest string // "sha256:<hex>"
}

// PackDir packs a directory tree into a layer: regular files, directories and symlinks, owned by
// root, with fixed timestamps, in lexical order. The directory's own mode is not recorded (the
// image's / belongs to the runtime). Anything else (devices, sockets, fifos) is refused: a
// container runtime provides /dev, and nothing we ship needs the others.
func PackDir(dir string) (*Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(info.Mode().Perm() | setBits(info.Mode())),
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch t := info.Mode().Type(); {
		case t == 0:
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		case t == fs.ModeDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case t == fs.ModeSymlink:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: file type %v cannot go into a layer", path, t)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		// A file that changes size while being packed would give a corrupt tar: CopyN fails.
		if _, err := io.CopyN(tw, f, info.Size()); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("packing %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("packing %s: %w", dir, err)
	}
	return &Layer{Source: dir, Data: buf.Bytes(), Digest: digest(buf.Bytes())}, nil
}

// setBits maps Go's setuid/setgid/sticky flags to the tar mode bits.
func setBits(m fs.FileMode) fs.FileMode {
	var b fs.FileMode
	if m&fs.ModeSetuid != 0 {
		b |= 04000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 02000
	}
	if m&fs.ModeSticky != 0 {
		b |= 01000
	}
	return b
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ImageConfig is what a container is started with.
type ImageConfig struct {
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	User       string            `json:"User,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// configFile is the image configuration blob; its digest is the image ID. The field names are
// the Docker image spec's, which the OCI image spec kept.
type configFile struct {
	Architecture string      `json:"architecture"`
	OS           string      `json:"os"`
	Created      time.Time   `json:"created"`
	Config       ImageConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []history `json:"history"`
}

type history struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// manifestEntry is one image of a docker-archive's manifest.json (what `docker save` writes and
// `docker load` and `ctr images import` read).
type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// Image is an image ready to be written.
type Image struct {
	Tags   []string
	Config []byte // the config blob
	ID     string // digest of Config
	Layers []*Layer
}

// NewImage assembles the configuration of an image made of layers, bottom first.
func NewImage(tags []string, arch string, cfg ImageConfig, layers []*Layer) (*Image, error) {
	if len(tags) == 0 {
		return nil, errors.New("an image needs at least one tag")
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			return nil, err
		}
	}
	cf := configFile{Architecture: arch, OS: "linux", Created: epoch, Config: cfg}
	cf.RootFS.Type = "layers"
	cf.RootFS.DiffIDs = []string{}
	for _, l := range layers {
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, l.Digest)
		cf.History = append(cf.History, history{Created: epoch, CreatedBy: "imgtool: layer from " + filepath.Base(l.Source)})
	}
	b, err := json.Marshal(cf)
	if err != nil {
		return nil, err
	}
	return &Image{Tags: tags, Config: b, ID: digest(b), Layers: layers}, nil
}

// checkTag accepts "host/path:tag" references; a registry-less name would be read as a
// docker.io image by the runtime, and a missing tag as :latest, whose default pull policy is
// Always — which fails on a node that cannot pull.
func checkTag(t string) error {
	slash := strings.Index(t, "/")
	colon := strings.LastIndex(t, ":")
	if slash <= 0 || !strings.ContainsAny(t[:slash], ".:") || colon < slash || colon == len(t)-1 {
		return fmt.Errorf("tag %q: want host/name:tag, with a host (e.g. vpcnat.local/name:dev)", t)
	}
	if strings.HasSuffix(t, ":latest") {
		return fmt.Errorf("tag %q: :latest makes kubelet always pull, and test nodes cannot pull", t)
	}
	return nil
}

// blobPath names a blob inside the archive the way `docker save` (25+) does.
func blobPath(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }

// WriteArchive writes img as a docker-archive tarball to w.
func WriteArchive(w io.Writer, img *Image) error {
	tw := tar.NewWriter(w)
	m := []manifestEntry{{Config: blobPath(img.ID), RepoTags: img.Tags, Layers: []string{}}}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	written := map[string]bool{}
	for _, l := range img.Layers {
		m[0].Layers = append(m[0].Layers, blobPath(l.Digest))
		if written[l.Digest] { // two identical layers (e.g. two empty ones) are one blob
			continue
		}
		written[l.Digest] = true
		if err := writeFile(tw, blobPath(l.Digest), l.Data); err != nil {
			return err
		}
	}
	if err := writeFile(tw, blobPath(img.ID), img.Config); err != nil {
		return err
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := writeFile(tw, "manifest.json", mb); err != nil {
		return err
	}
	return tw.Close()
}

func writeFile(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// ArchiveImage is what ReadArchive finds in a docker-archive: the first image's tags, ID and
// layer digests, each checked against its content.
type ArchiveImage struct {
	Tags   []string
	ID     string
	Layers []string
	Config configFile
}

// ReadArchive reads back a docker-archive and checks that every blob the manifest names is
// there with the content its name claims and that the config's diff IDs match the layers.
func ReadArchive(r io.Reader) (*ArchiveImage, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", hdr.Name, err)
		}
		files[hdr.Name] = b
	}
	var m []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("manifest.json: want 1 image, found %d", len(m))
	}
	blob := func(p string) ([]byte, error) {
		b, ok := files[p]
		if !ok {
			return nil, fmt.Errorf("%s: named by manifest.json, missing from the archive", p)
		}
		if d := digest(b); blobPath(d) != p {
			return nil, fmt.Errorf("%s: content has digest %s", p, d)
		}
		return b, nil
	}
	cb, err := blob(m[0].Config)
	if err != nil {
		return nil, err
	}
	a := &ArchiveImage{Tags: m[0].RepoTags, ID: digest(cb)}
	if err := json.Unmarshal(cb, &a.Config); err != nil {
		return nil, fmt.Errorf("config %s: %w", m[0].Config, err)
	}
	if len(a.Config.RootFS.DiffIDs) != len(m[0].Layers) {
		return nil, fmt.Errorf("config has %d diff IDs for %d layers", len(a.Config.RootFS.DiffIDs), len(m[0].Layers))
	}
	for i, p := range m[0].Layers {
		lb, err := blob(p)
		if err != nil {
			return nil, err
		}
		if d := digest(lb); d != a.Config.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("layer %d: digest %s, config says %s", i, d, a.Config.RootFS.DiffIDs[i])
		}
		a.Layers = append(a.Layers, digest(lb))
	}
	return a, nil
}
