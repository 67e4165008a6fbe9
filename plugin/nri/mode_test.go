package nri

import "testing"

func TestModeFor(t *testing.T) {
	for _, tc := range []struct {
		runtime, version string
		want             NRIMode
	}{
		{"containerd", "v2.4.2", ModeValidate},
		{"containerd", "2.2.9", ModeValidate},
		{"containerd", "v2.3.7", ModeValidate},
		{"containerd", "v2.1.4", ModeCreate},
		{"containerd", "v2.0.0", ModeCreate},
		{"containerd", "1.7.20", ModeCreate},
		{"cri-o", "1.33.0", ModeValidate},
		{"containerd", "garbage", ModeValidate},
	} {
		if got := ModeFor(tc.runtime, tc.version); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.runtime, tc.version, got, tc.want)
		}
	}
}
