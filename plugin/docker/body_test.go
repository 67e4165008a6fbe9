package docker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCreateImage(t *testing.T) {
	for _, tc := range []struct {
		name, body, image, err string
	}{
		{"docker run", `{"Hostname":"","Image":"registry.corp.example/app:1","Cmd":["sh"],"HostConfig":{"NetworkMode":"host"}}`, "registry.corp.example/app:1", ""},
		{"lower-case key, as Go reads it", `{"image":"a:1"}`, "a:1", ""},
		{"escaped key", `{"\u0049mage":"a:1"}`, "a:1", ""},
		{"labels", `{"Image":"a:1","Labels":{"x":"1","y":"2"}}`, "a:1", ""},
		{"case variants: Go would keep the last", `{"Image":"signed:1","image":"unsigned:1"}`, "", `keys "Image" and "image" in one object`},
		{"exact duplicate", `{"Image":"signed:1","Image":"unsigned:1"}`, "", `keys "Image" and "Image"`},
		{"upper-case variant", `{"Hostname":"a","Image":"x:1","HOSTNAME":"b"}`, "", `keys "Hostname" and "HOSTNAME"`},
		{"Kelvin sign folds to k, as Go reads it", "{\"Labels\":{},\"Image\":\"x:1\",\"\u212aernel\":1,\"kernel\":2}", "", "in one object"},
		{"duplicate nested", `{"Image":"a:1","HostConfig":{"Privileged":false,"privileged":true}}`, "", `keys "Privileged" and "privileged"`},
		{"no image", `{"Cmd":["sh"]}`, "", "no image named"},
		{"empty image", `{"Image":""}`, "", "no image named"},
		{"image not a string", `{"Image":["a"]}`, "", `"Image" is not a string`},
		{"empty body", ``, "", "no JSON body"},
		{"array", `["Image"]`, "", "not a JSON object"},
		{"trailing data", `{"Image":"a:1"} {"Image":"b:1"}`, "", "data after the JSON object"},
		{"broken", `{"Image":"a:1"`, "", "not valid JSON"},
		{"too deep", `{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"Image":"a:1"}`, "", "nested deeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			image, err := createImage([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !errors.Is(err, errBody) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("createImage = %q, %v; want an errBody containing %q", image, err, tc.err)
				}
				return
			}
			if err != nil || image != tc.image {
				t.Fatalf("createImage = %q, %v; want %q", image, err, tc.image)
			}
		})
	}
}

// FuzzCreateImage holds createImage to dockerd's reading of the body
// (encoding/json into a struct): whenever trustd reads an image, Go reads
// the same one.
func FuzzCreateImage(f *testing.F) {
	for _, s := range []string{
		`{"Image":"a:1"}`, `{"image":"a"}`, `{"Image":"a","image":"b"}`, `{"IMAGE":"a","Labels":{"Image":"b"}}`,
		`{"\u0130mage":"a"}`, `{"Imag\u212a":"a"}`, `{"Image":"a\ud800"}`, `{"Image":"a"}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		image, err := createImage(body)
		if err != nil {
			return
		}
		var cfg struct {
			Image  string
			Labels map[string]string
		}
		if err := json.Unmarshal(body, &cfg); err != nil {
			// Go fails on types the struct fixes (Labels not an object);
			// dockerd then refuses the body itself.
			return
		}
		if cfg.Image != image {
			t.Fatalf("trustd reads image %q, Go reads %q, from %q", image, cfg.Image, body)
		}
	})
}
