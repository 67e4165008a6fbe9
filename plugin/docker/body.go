package docker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// errBody marks a containers/create body that trustd refuses to read:
// dockerd could read another image from it than trustd would.
var errBody = errors.New("container configuration refused")

// maxDepth bounds the nesting createImage walks (dockerd's body is at
// most 4 MiB when it is sent to the plugin at all).
const maxDepth = 64

// createImage returns the Image of a containers/create body. dockerd
// decodes the body with encoding/json, which matches keys without regard
// to case and keeps the last of duplicate keys: so a body in which two
// keys of one object are equal ignoring case ("Image" and "image"), or
// which is not exactly one JSON object, is refused (errBody), whatever
// the keys: trustd never decides from a body dockerd may read otherwise.
func createImage(body []byte) (string, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "", fmt.Errorf("%w: the request has no JSON body for trustd to read (send it as Content-Type: application/json)", errBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	image, found := "", false
	var walk func(depth int, top bool) error
	walk = func(depth int, top bool) error {
		if depth > maxDepth {
			return fmt.Errorf("%w: nested deeper than %d levels", errBody, maxDepth)
		}
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: not valid JSON: %w", errBody, err)
		}
		if top && tok != json.Delim('{') {
			return fmt.Errorf("%w: the body is not a JSON object", errBody)
		}
		switch tok {
		case json.Delim('{'):
			keys := map[string]string{} // folded → as written
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return fmt.Errorf("%w: not valid JSON: %w", errBody, err)
				}
				k := kt.(string) // the decoder yields only string keys
				f := fold(k)
				if prev, dup := keys[f]; dup {
					return fmt.Errorf("%w: keys %q and %q in one object: Docker reads them as the same field and keeps the last, trustd refuses to guess", errBody, prev, k)
				}
				keys[f] = k
				if top && f == fold("Image") {
					vt, err := dec.Token()
					if err != nil {
						return fmt.Errorf("%w: not valid JSON: %w", errBody, err)
					}
					s, ok := vt.(string)
					if !ok {
						return fmt.Errorf("%w: %q is not a string", errBody, k)
					}
					image, found = s, true
					continue
				}
				if err := walk(depth+1, false); err != nil {
					return err
				}
			}
			return closing(dec)
		case json.Delim('['):
			for dec.More() {
				if err := walk(depth+1, false); err != nil {
					return err
				}
			}
			return closing(dec)
		}
		return nil
	}
	if err := walk(0, true); err != nil {
		return "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", fmt.Errorf("%w: data after the JSON object", errBody)
	}
	if !found || image == "" {
		return "", fmt.Errorf("%w: no image named", errBody)
	}
	return image, nil
}

// closing reads the delimiter that ends an object or an array.
func closing(dec *json.Decoder) error {
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%w: not valid JSON: %w", errBody, err)
	}
	return nil
}

// fold maps s to a string that is equal for two strings exactly when
// strings.EqualFold says they are (the matching encoding/json uses for
// field names): each rune becomes the smallest rune of its case-folding
// orbit ('K', 'k' and the Kelvin sign are all 'K').
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}
