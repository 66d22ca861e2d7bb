package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ServerInfo is what a run's manifest records of one SofaDB replica, read from its /status before
// the run: which build and data directory (identity) answered, and the settings that shape what was
// measured (fsync, batching, pipeline depth, mode, reads). A run's numbers mean little without them.
type ServerInfo struct {
	URL      string          `json:"url"`
	ID       int             `json:"id,omitempty"`
	Identity string          `json:"identity,omitempty"`
	Build    string          `json:"build,omitempty"`
	Role     string          `json:"role,omitempty"`
	Settings json.RawMessage `json:"settings,omitempty"`
	Error    string          `json:"error,omitempty"` // why /status could not be read
}

// statusBytesMax bounds a /status body: it is a few kilobytes.
const statusBytesMax = 1 << 20

// serverStatusURLs are the /status URLs to record: the ones given, or a sofa-http target's own.
func serverStatusURLs(c *Config) []string {
	bases := c.ServerStatus
	if len(bases) == 0 {
		if spec, err := ParseTarget(c.TargetURL); err == nil && spec.Scheme == SchemeSofaHTTP {
			bases = spec.Addrs
		}
	}
	var urls []string
	for _, b := range bases {
		if !strings.Contains(b, "://") {
			b = "http://" + b
		}
		urls = append(urls, strings.TrimSuffix(b, "/")+"/status")
	}
	return urls
}

// fetchServers reads every replica's /status, each within timeout. A replica that cannot be read
// is recorded with the reason: the run goes on (it may be the one a failover scenario killed).
func fetchServers(ctx context.Context, urls []string, timeout time.Duration) []ServerInfo {
	client := &http.Client{Timeout: timeout}
	out := make([]ServerInfo, len(urls))
	for i, u := range urls {
		out[i] = fetchServer(ctx, client, u)
	}
	return out
}

func fetchServer(ctx context.Context, client *http.Client, url string) ServerInfo {
	info := ServerInfo{URL: url}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	resp, err := client.Do(req)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, statusBytesMax))
	if err != nil {
		info.Error = err.Error()
		return info
	}
	if resp.StatusCode != http.StatusOK {
		info.Error = fmt.Sprintf("%s: %.200s", resp.Status, body)
		return info
	}
	var st struct {
		ID       int             `json:"id"`
		Identity string          `json:"identity"`
		Build    string          `json:"build"`
		Role     string          `json:"role"`
		Settings json.RawMessage `json:"settings"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		info.Error = fmt.Sprintf("not a SofaDB /status: %v", err)
		return info
	}
	info.ID, info.Identity, info.Build, info.Role, info.Settings = st.ID, st.Identity, st.Build, st.Role, st.Settings
	return info
}
