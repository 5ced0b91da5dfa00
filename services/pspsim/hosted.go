package pspsim

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts/money"
)

// The hosted payment page. Card data is typed here, on the PSP's origin, and
// never reaches the merchant (SAQ-A). The number and CVC live only in the
// request being handled: they are validated, reduced to brand and last four,
// and never stored, logged or echoed back into a re-rendered form.

// pageCSS is inline so the page needs no second request; the CSP admits it
// by its hash and nothing else (no scripts at all).
const pageCSS = `*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#f3f4f8;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1f36}
main{width:100%;max-width:420px;margin:24px;padding:28px 28px 20px;background:#fff;border-radius:12px;box-shadow:0 2px 4px rgba(0,0,0,.06),0 12px 32px rgba(50,50,93,.12)}
header{display:flex;justify-content:space-between;align-items:center;margin-bottom:18px}
.brand{font-weight:700;letter-spacing:.02em;color:#4f46e5}
.test{font-size:11px;font-weight:700;padding:2px 8px;border-radius:10px;background:#fef3c7;color:#92400e}
.label{margin:0;color:#6b7280;font-size:14px}
.amount{margin:2px 0 4px;font-size:32px;font-weight:650;font-variant-numeric:tabular-nums}
.ref,.desc{margin:0 0 4px;color:#4b5563;font-size:14px;overflow-wrap:anywhere}
form{margin-top:18px}
label{display:block;margin:12px 0 4px;font-size:14px;font-weight:600;color:#374151}
input{width:100%;padding:10px 12px;font:inherit;border:1px solid #d1d5db;border-radius:8px;background:#fff}
input:focus{outline:2px solid #818cf8;outline-offset:1px;border-color:#6366f1}
.row{display:flex;gap:12px}.row>div{flex:1}
button{width:100%;margin-top:20px;padding:12px;font:inherit;font-weight:650;color:#fff;background:#4f46e5;border:0;border-radius:8px;cursor:pointer}
button:hover{background:#4338ca}
.error{margin:14px 0 0;padding:10px 12px;border-radius:8px;background:#fef2f2;color:#991b1b;font-size:14px}
.hint{margin:18px 0 0;color:#6b7280;font-size:12px}
h1{font-size:22px;margin:4px 0 8px}
a{color:#4f46e5}`

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} · pspsim</title>
<style>` + pageCSS + `</style>
</head>
<body>
<main>
<header><span class="brand">pspsim</span><span class="test">TEST MODE</span></header>
{{- if .Form}}
<p class="label">Pay</p>
<p class="amount">{{.Amount}}</p>
<p class="ref">Reference {{.Reference}}</p>
{{- with .Description}}
<p class="desc">{{.}}</p>
{{- end}}
{{- with .Error}}
<p class="error" role="alert">{{.}}</p>
{{- end}}
<form method="post" autocomplete="on">
<label for="cardnumber">Card number</label>
<input id="cardnumber" name="cardnumber" type="text" inputmode="numeric" autocomplete="cc-number" placeholder="1234 1234 1234 1234" maxlength="23" required>
<div class="row">
<div><label for="exp">Expiry</label><input id="exp" name="exp" type="text" autocomplete="cc-exp" placeholder="MM/YY" maxlength="7" value="{{.Exp}}" required></div>
<div><label for="cvc">CVC</label><input id="cvc" name="cvc" type="text" inputmode="numeric" autocomplete="cc-csc" placeholder="123" maxlength="4" pattern="[0-9]{3,4}" required></div>
</div>
<label for="name">Name on card</label>
<input id="name" name="name" type="text" autocomplete="cc-name" maxlength="200" value="{{.Name}}" required>
<button type="submit">Pay {{.Amount}}</button>
</form>
<p class="hint">Test cards: 4242&nbsp;4242&nbsp;4242&nbsp;4242 succeeds; 4000&nbsp;0000&nbsp;0000&nbsp;0002 is declined; 4000&nbsp;0000&nbsp;0000&nbsp;9995 has insufficient funds; 4000&nbsp;0000&nbsp;0000&nbsp;0077 succeeds with a late webhook. Any future expiry and any CVC.</p>
{{- else}}
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- with .Back}}
<p><a href="{{.}}">Return to the merchant</a></p>
{{- end}}
{{- end}}
</main>
</body>
</html>
`))

type pageData struct {
	Title                          string
	Form                           bool
	Amount, Reference, Description string
	Error, Exp, Name               string // the form; never the card number or CVC
	Message                        string
	Back                           string // link to the merchant
}

// pageCSP is the Content-Security-Policy of every page, less form-action,
// which depends on the payment's return URL.
func pageCSP() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src 'none'; base-uri 'none'; frame-ancestors 'none'"
}

// maxFormBody bounds the card form (four short fields).
const maxFormBody = 16 << 10

func (s *Server) renderPage(w http.ResponseWriter, status int, returnURL string, d pageData) {
	// form-action must also allow the return URL's origin: browsers apply it
	// to the redirect that follows the form's POST.
	formAction := "'self'"
	if u, err := url.Parse(returnURL); err == nil && u.Scheme != "" && u.Host != "" {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	h := w.Header()
	h.Set("Content-Security-Policy", s.csp+"; form-action "+formAction)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer") // the URL holds the page's token
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	if err := pageTmpl.Execute(w, d); err != nil {
		s.log.Error("render hosted page", "err", err)
	}
}

func formatAmount(amount int64, currency string) string {
	c, err := money.ParseCurrency(currency)
	if err != nil { // unreachable: the API validated it before storing
		return fmt.Sprintf("%s %d (minor units)", currency, amount)
	}
	return money.Format(amount, c)
}

// validToken checks the shape before any lookup: 26 base32 characters.
func validToken(t string) bool {
	if len(t) != 26 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !(t[i] >= 'a' && t[i] <= 'z' || t[i] >= '2' && t[i] <= '7') {
			return false
		}
	}
	return true
}

func (s *Server) paymentByToken(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, token string, lock bool) (payment, error) {
	if !validToken(token) {
		return payment{}, pgx.ErrNoRows
	}
	sql := `SELECT ` + paymentCols + ` FROM pspsim.payments WHERE page_token = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	return scanPayment(q.QueryRow(ctx, sql, token))
}

func (s *Server) notFoundPage(w http.ResponseWriter) {
	s.renderPage(w, http.StatusNotFound, "", pageData{Title: "Payment not found",
		Message: "This payment link is not valid. Go back to the merchant and start again."})
}

func (s *Server) formPage(w http.ResponseWriter, status int, p payment, d pageData) {
	d.Title, d.Form = "Pay "+p.Reference, true
	d.Amount, d.Reference, d.Description = formatAmount(p.Amount, p.Currency), p.Reference, p.Description
	s.renderPage(w, status, p.ReturnURL, d)
}

// donePage answers for a payment that can no longer be paid.
func (s *Server) donePage(w http.ResponseWriter, status int, p payment) {
	d := pageData{Back: returnLink(p)}
	switch {
	case p.Status == statusSucceeded:
		d.Title, d.Message = "Already paid", "This payment of "+formatAmount(p.Amount, p.Currency)+" has been paid. It cannot be paid twice."
	case p.FailureCode == failureExpired || (p.Status == statusRequiresPaymentMethod && p.Expired):
		d.Title, d.Message = "Payment expired", "This payment link has expired. Go back to the merchant to start again."
	case p.Status == statusFailed:
		d.Title, d.Message = "Payment failed", "This payment has already failed. Go back to the merchant to try again."
	default:
		d.Title, d.Message = "Payment in progress", "This payment is being processed."
	}
	s.renderPage(w, status, p.ReturnURL, d)
}

// returnLink is the merchant's return URL with the outcome as a hint:
// ?checkout=<merchant_reference>&status=<succeeded|failed>. The merchant must
// not trust it (anyone can type it); the webhook or a GET is the truth.
func returnLink(p payment) string {
	u, err := url.Parse(p.ReturnURL)
	if err != nil || p.ReturnURL == "" {
		return ""
	}
	status := statusFailed
	switch p.Status {
	case statusSucceeded:
		status = statusSucceeded
	case statusRequiresPaymentMethod, statusProcessing:
		if !p.Expired {
			status = statusProcessing
		}
	}
	q := u.Query()
	q.Set("checkout", p.Reference)
	q.Set("status", status)
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	p, err := s.paymentByToken(r.Context(), s.pool, r.PathValue("token"), false)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		s.notFoundPage(w)
	case err != nil:
		s.log.Error("hosted page", "err", err)
		http.Error(w, "temporarily unavailable, try again", http.StatusServiceUnavailable)
	case p.Status != statusRequiresPaymentMethod || p.Expired:
		s.donePage(w, http.StatusOK, p)
	default:
		s.formPage(w, http.StatusOK, p, pageData{})
	}
}

func (s *Server) handlePay(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed form", http.StatusBadRequest)
		return
	}
	form := r.PostForm
	// Whatever happens below, the card number and CVC are not kept: the
	// outcome holds only the brand and the last four digits.
	pan, panOK := normalizePAN(form.Get("cardnumber"))
	exp, name := strings.TrimSpace(form.Get("exp")), strings.TrimSpace(form.Get("name"))
	var msg string
	switch {
	case !panOK:
		msg = msgCardNumber
	case !validExpiry(exp, time.Now()):
		msg = msgExpiry
	case !validCVC(strings.TrimSpace(form.Get("cvc"))):
		msg = msgCVC
	case name == "" || checkText(name, 200, true) != "":
		msg = msgName
	}
	var o outcome
	if msg == "" {
		o = cardOutcome(pan)
	}
	pan = ""
	form.Del("cardnumber")
	form.Del("cvc")

	ctx, cancel := workContext(r)
	defer cancel()
	p, err := s.paymentByToken(ctx, s.pool, token, false)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		s.notFoundPage(w)
		return
	case err != nil:
		s.log.Error("hosted page", "err", err)
		http.Error(w, "temporarily unavailable, try again", http.StatusServiceUnavailable)
		return
	case p.Status != statusRequiresPaymentMethod || p.Expired:
		s.donePage(w, http.StatusConflict, p)
		return
	case msg != "":
		if len(exp) > 7 {
			exp = ""
		}
		if len(name) > 200 {
			name = ""
		}
		s.formPage(w, http.StatusUnprocessableEntity, p, pageData{Error: msg, Exp: exp, Name: name})
		return
	}

	var charged bool
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		charged = false
		var err error
		p, err = s.paymentByToken(ctx, tx, token, true)
		if err != nil {
			return err
		}
		switch {
		case p.Status != statusRequiresPaymentMethod:
			return nil // paid (or failed) meanwhile, by a second POST or a confirm
		case p.Expired:
			ps, err := s.expireTx(ctx, tx, []string{p.ID})
			if len(ps) == 1 {
				p = ps[0]
			}
			return err
		}
		p, err = s.chargeTx(ctx, tx, p, o, p.IdempotencyKey)
		charged = err == nil
		return err
	})
	if err != nil {
		s.log.Error("hosted payment", "err", err)
		http.Error(w, "Something went wrong. Reload this page to see whether the payment went through.", http.StatusServiceUnavailable)
		return
	}
	s.wakeSender()
	if !charged {
		s.donePage(w, http.StatusConflict, p)
		return
	}
	http.Redirect(w, r, returnLink(p), http.StatusSeeOther)
}
