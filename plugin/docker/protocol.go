package docker

// The plugin protocol's wire types (moby pkg/authorization and
// pkg/plugins), as dockerd sends and reads them.

// activateResponse answers POST /Plugin.Activate.
type activateResponse struct {
	Implements []string
}

// authzRequest is what dockerd sends to /AuthZPlugin.AuthZReq and
// /AuthZPlugin.AuthZRes. RequestBody is present only for a JSON body
// (Content-Type application/json) of at most 4 MiB; dockerd refuses a
// larger one itself.
type authzRequest struct {
	User            string            `json:"User,omitempty"`
	UserAuthNMethod string            `json:"UserAuthNMethod,omitempty"`
	RequestMethod   string            `json:"RequestMethod,omitempty"`
	RequestURI      string            `json:"RequestUri,omitempty"`
	RequestBody     []byte            `json:"RequestBody,omitempty"`
	RequestHeaders  map[string]string `json:"RequestHeaders,omitempty"`

	ResponseStatusCode int `json:"ResponseStatusCode,omitempty"`
}

// authzResponse is the plugin's answer. dockerd prints a refusal as
// "authorization denied by plugin NAME: MSG"; Err is an error of the
// plugin (dockerd answers 500 with it).
type authzResponse struct {
	Allow bool   `json:"Allow"`
	Msg   string `json:"Msg,omitempty"`
	Err   string `json:"Err,omitempty"`
}

// The paths of the protocol.
const (
	pathActivate = "/Plugin.Activate"
	pathAuthZReq = "/AuthZPlugin.AuthZReq"
	pathAuthZRes = "/AuthZPlugin.AuthZRes"
	// pluginContentType is the content type of the protocol's answers.
	pluginContentType = "application/vnd.docker.plugins.v1.2+json"
)
