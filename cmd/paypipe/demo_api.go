package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"

	"github.com/paypipe/paypipe/services/pspsim"
)

// The demo's HTTP side: it talks to paypipe's API as a merchant's server
// would, to the hosted payment page as a buyer's browser would, and to the
// simulator's admin endpoints as a test harness would.

const (
	// demoRequestTimeout bounds every HTTP exchange of the demo.
	demoRequestTimeout = 10 * time.Second
	// maxDemoBody bounds what the demo reads of any answer.
	maxDemoBody = 1 << 20
)

// merchantAPI calls paypipe's /v1 API with a merchant's key.
type merchantAPI struct {
	base string
	key  string
	// client never follows redirects: a 303 from the PSP's page is shown,
	// not taken.
	client *http.Client
}

func newMerchantAPI(base string) *merchantAPI {
	return &merchantAPI{base: base, client: &http.Client{
		Timeout:       demoRequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// apiAnswer is one HTTP answer, body read.
type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (c *merchantAPI) send(req *http.Request) (apiAnswer, error) {
	res, err := c.client.Do(req)
	if err != nil {
		return apiAnswer{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxDemoBody))
	if err != nil {
		return apiAnswer{}, fmt.Errorf("%s %s: read answer: %w", req.Method, req.URL.Redacted(), err)
	}
	return apiAnswer{status: res.StatusCode, header: res.Header, body: body}, nil
}

// call sends one API request; idemKey is required by every POST.
func (c *merchantAPI) call(ctx context.Context, method, path, idemKey string, body any) (apiAnswer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiAnswer{}, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, demoRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return apiAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	return c.send(req)
}

// do calls the API, expects status want and decodes the body into out.
func (c *merchantAPI) do(ctx context.Context, method, path, idemKey string, body any, want int, out any) error {
	ans, err := c.call(ctx, method, path, idemKey, body)
	if err != nil {
		return err
	}
	if ans.status != want {
		return fmt.Errorf("%s %s: %d %s, want %d", method, path, ans.status, bytes.TrimSpace(ans.body), want)
	}
	if out != nil {
		if err := json.Unmarshal(ans.body, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func (c *merchantAPI) readyz(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, demoRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return err.Error()
	}
	ans, err := c.send(req)
	if err != nil {
		return err.Error()
	}
	var body struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(ans.body, &body)
	return fmt.Sprintf("%d %s", ans.status, body.Status)
}

// hostedForm is what a browser finds on the hosted payment page: the form
// it would submit and what the page says it charges.
type hostedForm struct {
	method, action string
	fields         []string
	amount         string
}

// parseHostedPage reads the page's first form the way a browser does: the
// method, the action resolved against the page's URL (an absent action
// posts back to the page), the names of its inputs.
func parseHostedPage(page *url.URL, body []byte) (hostedForm, error) {
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		return hostedForm{}, fmt.Errorf("hosted page: %w", err)
	}
	var f hostedForm
	var form *html.Node
	attr := func(n *html.Node, key string) string {
		for _, a := range n.Attr {
			if a.Key == key {
				return a.Val
			}
		}
		return ""
	}
	// The page is a few dozen elements; the walk is bounded by its size,
	// itself bounded by maxDemoBody.
	var walk func(n *html.Node, inForm bool)
	walk = func(n *html.Node, inForm bool) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				if form == nil {
					form, inForm = n, true
				}
			case "input":
				if inForm && attr(n, "name") != "" {
					f.fields = append(f.fields, attr(n, "name"))
				}
			case "p":
				if attr(n, "class") == "amount" && n.FirstChild != nil && n.FirstChild.Type == html.TextNode {
					f.amount = strings.TrimSpace(n.FirstChild.Data)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inForm)
		}
	}
	walk(doc, false)
	if form == nil {
		return hostedForm{}, fmt.Errorf("hosted page %s has no form", page.Redacted())
	}
	f.method = strings.ToUpper(attr(form, "method"))
	if f.method == "" {
		f.method = http.MethodGet
	}
	action, err := page.Parse(attr(form, "action"))
	if err != nil {
		return hostedForm{}, fmt.Errorf("hosted page: form action: %w", err)
	}
	f.action = action.String()
	return f, nil
}

// getPage fetches the hosted page as a browser would (no API key: the
// page's URL is its only credential).
func (c *merchantAPI) getPage(ctx context.Context, pageURL string) (apiAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, demoRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
	if err != nil {
		return apiAnswer{}, err
	}
	req.Header.Set("Accept", "text/html")
	return c.send(req)
}

// submitForm posts the form URL-encoded, as a browser submits a form with
// no enctype, and does not follow the answer's redirect.
func (c *merchantAPI) submitForm(ctx context.Context, f hostedForm, values url.Values) (apiAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, demoRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, f.method, f.action, strings.NewReader(values.Encode()))
	if err != nil {
		return apiAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	return c.send(req)
}

// charges reads the simulator's charge log for one merchant reference
// (paypipe's checkout id) with its admin key.
func (c *merchantAPI) charges(ctx context.Context, simURL, adminKey, reference string) ([]pspsim.Charge, error) {
	ctx, cancel := context.WithTimeout(ctx, demoRequestTimeout)
	defer cancel()
	u := simURL + "/admin/charges?" + url.Values{"merchant_reference": {reference}, "limit": {"100"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	ans, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if ans.status != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/charges: %d %s", ans.status, bytes.TrimSpace(ans.body))
	}
	var page pspsim.ChargesPage
	if err := json.Unmarshal(ans.body, &page); err != nil {
		return nil, fmt.Errorf("GET /admin/charges: %w", err)
	}
	if page.HasMore {
		return nil, fmt.Errorf("GET /admin/charges: more than 100 charges for %s", reference)
	}
	return page.Charges, nil
}
