package shop

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/payment"
)

// Defaults and bounds of Config.
const (
	// DefaultCheckoutWait bounds POST /demo/checkout: creating the checkout
	// and waiting for the PSP's page to be ready (executor registers the
	// payment asynchronously).
	DefaultCheckoutWait = 10 * time.Second
	maxCheckoutWait     = 10 * time.Second
	// DefaultAPITimeout bounds each call to paypipe's API.
	DefaultAPITimeout = 5 * time.Second
	// pageTimeout bounds the API work behind one order page or status poll.
	pageTimeout = 5 * time.Second
	// maxFormBytes bounds the checkout form (a token and a few quantities).
	maxFormBytes = 8 << 10
	// orderCacheSize bounds the order ref → checkout id cache.
	orderCacheSize = 4096
	// buyerID is the buyer every demo checkout names: the demo has no accounts.
	buyerID = "demo-buyer"
)

// Config configures a Shop. Zero values take the documented defaults.
type Config struct {
	// APIBaseURL is paypipe's own base URL, where the shop calls the
	// payment API (e.g. http://127.0.0.1:8080; BaseURL makes one from a
	// listen address). Required.
	APIBaseURL string
	// PublicURL is the shop's base URL as the buyer's browser reaches it;
	// return URLs point there. Default: APIBaseURL (the shop is mounted on
	// paypipe's own server). paypipe accepts http return URLs only for
	// localhost and 127.0.0.1: anywhere else it must be https.
	PublicURL string
	// APIKey is the demo merchant's API key (Setup returns one). Required.
	APIKey string
	// Sellers are the demo merchant's sellers, in the catalog's order
	// (Setup returns them so). Required: one per catalog seller.
	Sellers []uuid.UUID
	// Log receives the shop's errors; default: discarded.
	Log *slog.Logger
	// CheckoutWait bounds one POST /demo/checkout; default and maximum
	// DefaultCheckoutWait. When the PSP's page is not ready by then the
	// buyer lands on the order page, which links to it once it is.
	CheckoutWait time.Duration
	// HTTPClient calls paypipe's API; default: a client with
	// DefaultAPITimeout per call.
	HTTPClient *http.Client
}

// Shop is the demo marketplace: an HTTP handler for /demo and its pages.
// It keeps no state that matters: orders live in paypipe (the order cache
// only saves API calls), so any number of replicas can serve it.
type Shop struct {
	cfg     Config
	log     *slog.Logger
	cat     catalog
	api     *apiClient
	tokens  tokens
	orders  *orderCache
	pages   *template.Template
	css     template.CSS
	shopJS  template.JS
	orderJS template.JS
	csp     string
	sellers map[uuid.UUID]string
}

//go:embed templates
var assets embed.FS

// New validates cfg and builds a Shop.
func New(cfg Config) (*Shop, error) {
	cat := demoCatalog()
	if err := cat.check(); err != nil {
		return nil, fmt.Errorf("shop: %w", err)
	}
	var errs []error
	base, err := checkBaseURL("APIBaseURL", cfg.APIBaseURL)
	errs = append(errs, err)
	cfg.APIBaseURL = base
	if cfg.PublicURL == "" {
		cfg.PublicURL = base
	} else {
		cfg.PublicURL, err = checkBaseURL("PublicURL", cfg.PublicURL)
		errs = append(errs, err)
	}
	if cfg.APIKey == "" {
		errs = append(errs, errors.New("APIKey is required"))
	}
	sellers := map[uuid.UUID]string{}
	if len(cfg.Sellers) != len(cat.Sellers) {
		errs = append(errs, fmt.Errorf("Sellers: want %d (one per catalog seller, as Setup returns them), got %d", len(cat.Sellers), len(cfg.Sellers)))
	} else {
		for i, id := range cfg.Sellers {
			if id == uuid.Nil || sellers[id] != "" {
				errs = append(errs, fmt.Errorf("Sellers[%d]: want distinct non-nil ids", i))
				break
			}
			sellers[id] = cat.Sellers[i]
		}
	}
	switch {
	case cfg.CheckoutWait == 0:
		cfg.CheckoutWait = DefaultCheckoutWait
	case cfg.CheckoutWait < 0 || cfg.CheckoutWait > maxCheckoutWait:
		errs = append(errs, fmt.Errorf("CheckoutWait %s: want up to %s", cfg.CheckoutWait, maxCheckoutWait))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("shop: config: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultAPITimeout}
	}
	tok, err := newTokens(time.Now)
	if err != nil {
		return nil, err
	}
	s := &Shop{cfg: cfg, log: cfg.Log.With("component", "shop"), cat: cat, tokens: tok, sellers: sellers,
		api:    &apiClient{base: cfg.APIBaseURL, key: cfg.APIKey, hc: cfg.HTTPClient},
		orders: newOrderCache(orderCacheSize)}
	if err := s.loadAssets(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkBaseURL accepts an absolute http(s) URL without query or fragment
// and returns it without a trailing slash.
func checkBaseURL(field, raw string) (string, error) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s %q: want an absolute http(s) URL such as http://127.0.0.1:8080", field, raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// BaseURL turns a listen address (host:port, as net.Listener.Addr gives
// it) into a URL to reach it from the same machine: an unspecified host
// (":8080", "0.0.0.0", "[::]") becomes 127.0.0.1.
func BaseURL(listenAddr string) string {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "http://" + listenAddr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (s *Shop) loadAssets() error {
	read := func(name string) (string, error) {
		b, err := assets.ReadFile("templates/" + name)
		if err != nil {
			return "", fmt.Errorf("shop: asset %s: %w", name, err)
		}
		return string(b), nil
	}
	css, err := read("shop.css")
	if err != nil {
		return err
	}
	shopJS, err := read("shop.js")
	if err != nil {
		return err
	}
	orderJS, err := read("order.js")
	if err != nil {
		return err
	}
	s.css, s.shopJS, s.orderJS = template.CSS(css), template.JS(shopJS), template.JS(orderJS)
	s.pages, err = template.ParseFS(assets, "templates/*.html")
	if err != nil {
		return fmt.Errorf("shop: templates: %w", err)
	}
	// No inline code runs but these exact texts (CSP hashes); the only
	// connection a page makes is the order page's poll of its own origin.
	// form-action is left out on purpose: the checkout form's POST ends in a
	// redirect to the PSP's page, whose origin the shop learns only from
	// paypipe's answer, and browsers apply form-action to that redirect.
	s.csp = "default-src 'none'; style-src " + cspHash(css) + "; script-src " + cspHash(shopJS) + " " + cspHash(orderJS) +
		"; connect-src 'self'; img-src 'none'; base-uri 'none'; frame-ancestors 'none'"
	return nil
}

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Handler serves the shop's pages under /demo:
//
//	GET  /demo                      the shop
//	POST /demo/checkout             create a hosted checkout; 303 to the PSP's page
//	GET  /demo/orders/{ref}         the order page (the checkout's return URL)
//	GET  /demo/orders/{ref}/status  the order's status as JSON, polled by the page
//
// Mount it for both "/demo" and "/demo/".
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /demo", s.handleShop)
	mux.HandleFunc("GET /demo/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/demo", http.StatusMovedPermanently)
	})
	mux.HandleFunc("POST /demo/checkout", s.handleCheckout)
	mux.HandleFunc("GET /demo/orders/{ref}", s.handleOrder)
	mux.HandleFunc("GET /demo/orders/{ref}/status", s.handleStatus)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", s.csp)
		h.Set("Cache-Control", "no-store")
		// Order URLs are capabilities of a sort: do not hand them to the PSP.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		mux.ServeHTTP(w, r)
	})
}

// pageData is what every template gets; one of Shop, Order and Error is set.
type pageData struct {
	Title string
	CSS   template.CSS
	JS    template.JS
	// Refresh makes the page reload itself when scripts are off.
	Refresh bool
	Shop    *shopView
	Order   *orderView
	Error   *errorView
}

type shopView struct {
	Token    string
	Error    string
	Currency string
	Exponent int
	Sellers  []sellerView
	Total    string
}

type sellerView struct {
	Index int
	Name  string
	Items []itemView
}

type itemView struct {
	ID, Name, Description, Price string
	PriceMinor                   int64
	Qty                          int
}

type errorView struct {
	Heading, Message string
	// Retry, when set, resubmits the same form: safe, since the same token
	// is the same Idempotency-Key.
	Retry []formField
}

type formField struct{ Name, Value string }

func (s *Shop) render(w http.ResponseWriter, status int, name string, d pageData) {
	d.CSS = s.css
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages.ExecuteTemplate(w, name, d); err != nil {
		s.log.Error("render page", "page", name, "err", err)
	}
}

func (s *Shop) renderError(w http.ResponseWriter, status int, heading, msg string, retry []formField) {
	s.render(w, status, "error", pageData{Title: heading, Error: &errorView{Heading: heading, Message: msg, Retry: retry}})
}

// renderShop renders the shop with quantities qty (nil: none) and an error
// for the buyer, with a fresh form token.
func (s *Shop) renderShop(w http.ResponseWriter, status int, qty []int, msg string) {
	tok, err := s.tokens.issue()
	if err != nil {
		s.log.Error("issue form token", "err", err)
		s.renderError(w, http.StatusInternalServerError, "Something went wrong", "Reload the page to try again.", nil)
		return
	}
	v := &shopView{Token: tok, Error: msg, Currency: s.cat.Currency.Code, Exponent: s.cat.Currency.Exponent}
	var total int64
	for i, name := range s.cat.Sellers {
		sv := sellerView{Index: i, Name: name}
		for j, it := range s.cat.Items {
			if it.Seller != i {
				continue
			}
			q := 0
			if qty != nil {
				q = qty[j]
			}
			total += it.PriceMinor * int64(q) // bounded by catalog.check
			sv.Items = append(sv.Items, itemView{ID: it.ID, Name: it.Name, Description: it.Description,
				Price: money.Format(it.PriceMinor, s.cat.Currency), PriceMinor: it.PriceMinor, Qty: q})
		}
		v.Sellers = append(v.Sellers, sv)
	}
	v.Total = money.Format(total, s.cat.Currency)
	s.render(w, status, "shop", pageData{Title: "Marketplace", JS: s.shopJS, Shop: v})
}

func (s *Shop) handleShop(w http.ResponseWriter, r *http.Request) {
	s.renderShop(w, http.StatusOK, nil, "")
}

// idempotencyKey derives the checkout's Idempotency-Key from the form's nonce.
func idempotencyKey(nonce string) string { return "demo-shop-" + nonce }

func (s *Shop) orderPath(ref string) string { return "/demo/orders/" + ref }

func (s *Shop) returnURL(ref string) string { return s.cfg.PublicURL + s.orderPath(ref) }

// handleCheckout turns a submitted basket into a hosted checkout and sends
// the buyer to the PSP's page. See token.go for why a double submit makes
// one checkout.
func (s *Shop) handleCheckout(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		s.renderError(w, http.StatusUnsupportedMediaType, "Unsupported form", "Submit the shop's form.", nil)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Invalid form", "The form could not be read. Go back to the shop and try again.", nil)
		return
	}
	form := r.PostForm
	b, err := s.cat.parseBasket(form, "token")
	if be := (*basketError)(nil); errors.As(err, &be) {
		s.renderShop(w, http.StatusBadRequest, nil, sentence(be.Msg))
		return
	} else if err != nil {
		s.log.Error("parse basket", "err", err) // unreachable: parseBasket returns basketErrors only
		s.renderError(w, http.StatusInternalServerError, "Something went wrong", "Go back to the shop and try again.", nil)
		return
	}
	nonce, err := s.tokens.check(form.Get("token"))
	if err != nil {
		s.renderShop(w, http.StatusBadRequest, b.Qty, "This form has expired. Check your basket and press Pay again.")
		return
	}
	req := checkoutRequest{BuyerID: buyerID, Currency: s.cat.Currency.Code, Mode: contracts.ModeHosted, ReturnURL: s.returnURL(nonce)}
	for i, amount := range b.Sellers {
		if amount > 0 {
			req.Orders = append(req.Orders, orderRequest{SellerID: s.cfg.Sellers[i], AmountMinor: amount})
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckoutWait)
	defer cancel()
	co, err := s.api.createCheckout(ctx, idempotencyKey(nonce), req)
	if err != nil {
		var ae *apiError
		switch {
		case errors.As(err, &ae) && ae.Problem.Code == payment.CodeIdempotencyKeyReused:
			s.renderError(w, http.StatusConflict, "This form was already used",
				"This form already paid for a different basket. Go back to the shop for a fresh one.", nil)
		case errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusTooManyRequests:
			// The shop built a request paypipe refuses: a bug or a
			// misconfiguration (a deleted seller, a refused return URL).
			s.log.Error("paypipe refused the checkout", "status", ae.Status, "code", ae.Problem.Code,
				"detail", ae.Problem.Detail, "errors", ae.Problem.Errors)
			s.renderError(w, http.StatusBadGateway, "The payment could not be started",
				"paypipe refused this checkout ("+string(ae.Problem.Code)+"). The shop's log has the details.", nil)
		default:
			// Unknown outcome: the checkout may exist. Sending the same form
			// again is safe (same Idempotency-Key), so offer exactly that.
			s.log.Warn("checkout not created in time", "err", err)
			retry := []formField{{"token", form.Get("token")}}
			for i, it := range s.cat.Items {
				if b.Qty[i] > 0 {
					retry = append(retry, formField{qtyPrefix + it.ID, fmt.Sprint(b.Qty[i])})
				}
			}
			s.renderError(w, http.StatusServiceUnavailable, "paypipe did not answer in time",
				"Your card has not been charged. Try again: the shop sends the same request, so you cannot end up with two payments.", retry)
		}
		return
	}
	s.orders.put(nonce, co.ID)
	if u := s.awaitRedirect(ctx, co); u != "" {
		http.Redirect(w, r, u, http.StatusSeeOther)
		return
	}
	// Not ready in time (or already final): the order page shows the
	// status and links to the PSP's page as soon as there is one.
	http.Redirect(w, r, s.orderPath(nonce), http.StatusSeeOther)
}

// awaitRedirect polls the checkout until the PSP's page is known, the
// checkout is final, or ctx ends; it returns the page's URL or "".
func (s *Shop) awaitRedirect(ctx context.Context, co payment.Checkout) string {
	wait := 50 * time.Millisecond
	for {
		if u := paymentURL(co); u != "" {
			return u
		}
		if payment.Terminal(co.Status) || co.Status == payment.StatusSucceeded {
			return ""
		}
		if sleep(ctx, wait) != nil {
			return ""
		}
		wait = min(2*wait, 500*time.Millisecond)
		next, err := s.api.getCheckout(ctx, co.ID)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("poll checkout", "checkout", co.ID, "err", err)
			}
			continue
		}
		co = next
	}
}

// paymentURL is the checkout's hosted page, if it has one and it is an
// http(s) URL (it ends up in a Location header and in an href).
func paymentURL(co payment.Checkout) string {
	if co.NextAction == nil || co.NextAction.Type != payment.NextActionRedirect {
		return ""
	}
	u, err := url.Parse(co.NextAction.RedirectURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	return u.String()
}

// sentence capitalises a validation message for display.
func sentence(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// lookup finds the checkout of an order ref: the cache, else the API.
func (s *Shop) lookup(ctx context.Context, ref string) (payment.Checkout, error) {
	id, ok := s.orders.get(ref)
	if !ok {
		var err error
		if id, err = s.api.findByReturnURL(ctx, s.returnURL(ref)); err != nil {
			return payment.Checkout{}, err
		}
		s.orders.put(ref, id)
	}
	return s.api.getCheckout(ctx, id)
}

// hints are the values of the return URL's status parameter worth echoing.
var hints = map[string]string{payment.StatusSucceeded: "succeeded", payment.StatusFailed: "failed", payment.StatusProcessing: "is processing"}

func (s *Shop) handleOrder(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if !validRef(ref) {
		s.renderError(w, http.StatusNotFound, "Order not found", "There is no such order.", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	co, err := s.lookup(ctx, ref)
	switch {
	case errors.Is(err, errNotFound):
		s.renderError(w, http.StatusNotFound, "Order not found",
			"paypipe knows no checkout for this order (orders older than the newest few hundred are not looked up).", nil)
		return
	case err != nil:
		s.log.Warn("order page", "ref", ref, "err", err)
		s.renderError(w, http.StatusServiceUnavailable, "Status unavailable", "paypipe did not answer. Reload the page in a moment.", nil)
		return
	}
	v := s.orderView(ref, co)
	v.Hint = hints[r.URL.Query().Get("status")]
	s.render(w, http.StatusOK, "order", pageData{Title: "Your order", JS: s.orderJS, Refresh: !v.Final, Order: &v})
}

func (s *Shop) handleStatus(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	writeJSON := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(v); err != nil {
			s.log.Debug("write status", "err", err)
		}
	}
	if !validRef(ref) {
		writeJSON(http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), pageTimeout)
	defer cancel()
	co, err := s.lookup(ctx, ref)
	switch {
	case errors.Is(err, errNotFound):
		writeJSON(http.StatusNotFound, map[string]string{"error": "not_found"})
	case err != nil:
		s.log.Warn("order status", "ref", ref, "err", err)
		w.Header().Set("Retry-After", "1")
		writeJSON(http.StatusServiceUnavailable, map[string]string{"error": "unavailable"})
	default:
		writeJSON(http.StatusOK, s.orderView(ref, co))
	}
}
