package shop

import (
	"fmt"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/payment"
)

// orderView is the order page's content and, as JSON, the status poll's
// answer: the page renders it once and its script applies each poll's
// copy, so both always show the same thing.
type orderView struct {
	Ref        string `json:"ref"`
	CheckoutID string `json:"checkout_id"`
	StatusURL  string `json:"-"`
	// Status is paypipe's status of the checkout, verbatim.
	Status    string     `json:"status"`
	Label     string     `json:"label"`
	Steps     []stepView `json:"steps"`
	Final     bool       `json:"final"`
	Completed bool       `json:"completed"`
	Failed    bool       `json:"failed"`
	// FailureCode is paypipe's, verbatim (e.g. card_declined).
	FailureCode string `json:"failure_code"`
	// PaymentURL is the PSP's hosted page while the buyer still has to pay.
	PaymentURL string      `json:"payment_url"`
	Total      string      `json:"total"`
	FeeTotal   string      `json:"fee_total"`
	NetTotal   string      `json:"net_total"`
	Orders     []orderLine `json:"orders"`
	// Hint is what the return URL claimed (page only, never trusted).
	Hint string `json:"-"`
}

type stepView struct {
	Name  string `json:"name"`
	State string `json:"state"` // done, current, todo, failed
}

// orderLine is one seller's part: amount = fee + net.
type orderLine struct {
	Seller string `json:"seller"`
	Amount string `json:"amount"`
	Fee    string `json:"fee"`
	Net    string `json:"net"`
	Status string `json:"status"`
}

var labels = map[string]string{
	payment.StatusCreated:        "Preparing the payment page",
	payment.StatusRequiresAction: "Waiting for the payment at the PSP",
	payment.StatusProcessing:     "The PSP is processing the payment",
	payment.StatusSucceeded:      "Paid; booking it in the ledger and the sellers' wallets",
	payment.StatusCompleted:      "Paid and booked: nothing left to do",
	payment.StatusFailed:         "The payment failed",
}

// stepNames are the stages the page shows; stageOf maps a status onto them.
var stepNames = []string{"Checkout created", "Paid at the PSP", "Booked in the ledger and wallets"}

func stageOf(status string) (current int, failed bool) {
	switch status {
	case payment.StatusSucceeded:
		return 2, false
	case payment.StatusCompleted:
		return len(stepNames), false
	case payment.StatusFailed:
		return 1, true
	default: // created, requires_action, processing, and anything newer
		return 1, false
	}
}

func (s *Shop) orderView(ref string, co payment.Checkout) orderView {
	v := orderView{Ref: ref, CheckoutID: co.ID.String(), StatusURL: s.orderPath(ref) + "/status",
		Status: co.Status, Label: labels[co.Status], FailureCode: co.FailureCode,
		Final: payment.Terminal(co.Status), Completed: co.Status == payment.StatusCompleted,
		Failed: co.Status == payment.StatusFailed, Orders: []orderLine{}}
	if v.Label == "" {
		v.Label = co.Status
	}
	current, failed := stageOf(co.Status)
	for i, name := range stepNames {
		st := "todo"
		switch {
		case i < current:
			st = "done"
		case i == current && failed:
			st = "failed"
		case i == current:
			st = "current"
		}
		v.Steps = append(v.Steps, stepView{Name: name, State: st})
	}
	if co.Status == payment.StatusRequiresAction {
		v.PaymentURL = paymentURL(co)
	}
	format := formatter(co.Currency)
	var fees, nets []int64
	for _, o := range co.Orders {
		name, ok := s.sellers[o.SellerID]
		if !ok {
			name = o.SellerID.String()
		}
		v.Orders = append(v.Orders, orderLine{Seller: name, Amount: format(o.AmountMinor), Fee: format(o.FeeMinor),
			Net: format(o.NetMinor), Status: o.Status})
		fees, nets = append(fees, o.FeeMinor), append(nets, o.NetMinor)
	}
	v.Total = format(co.AmountMinor)
	v.FeeTotal, v.NetTotal = sumFormat(format, fees), sumFormat(format, nets)
	return v
}

func sumFormat(format func(int64) string, amounts []int64) string {
	sum, err := money.Sum(amounts...)
	if err != nil {
		return "—"
	}
	return format(sum)
}

// formatter formats amounts of a currency code for people.
func formatter(code string) func(int64) string {
	c, err := money.ParseCurrency(code)
	if err != nil { // paypipe validated it; show the raw amount rather than nothing
		return func(a int64) string { return fmt.Sprintf("%d %s minor units", a, code) }
	}
	return func(a int64) string { return money.Format(a, c) }
}
