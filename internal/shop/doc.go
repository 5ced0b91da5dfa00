// Package shop is paypipe's demo marketplace: a small web shop under /demo
// that sells a few items from two sellers and takes payment through
// paypipe's hosted checkout, the way a merchant's own site would. It is a
// client of paypipe, not part of it: it holds a merchant's API key and
// reaches paypipe only through the public HTTP API.
//
// # Flow
//
//  1. GET /demo renders the catalog with a form token (token.go): a random
//     nonce, its issue time and an HMAC.
//  2. POST /demo/checkout validates the basket (quantities 0 to MaxQuantity,
//     known items only, not empty), sums it per seller in integer minor
//     units, and creates a hosted checkout with one payment order per
//     seller. The Idempotency-Key is derived from the form's nonce and the
//     request body is a pure function of nonce and basket, so a double
//     click, a browser retry or the error page's "Try again" all get the
//     same checkout back (paypipe replays the stored answer, or answers 429
//     while the twin is in flight, which the shop waits out). It then waits,
//     at most Config.CheckoutWait (10 s), for executor to register the
//     payment with the PSP and answers 303 to the PSP's hosted page; if the
//     page is not ready in time, 303 to the order page, which links to it
//     once it is.
//  3. The PSP sends the buyer back to the return URL, /demo/orders/{ref}
//     (ref is the nonce: the return URL has to be fixed before paypipe
//     assigns the checkout's id). The page says what paypipe says, never
//     what the return URL's query claims (that is shown as a hint only),
//     and polls /demo/orders/{ref}/status every 500 ms until the checkout
//     is final: requires_action → succeeded → completed (ledger and wallet
//     booked), with the split per seller and the platform's fee.
//
// # State
//
// None that matters. An order is its paypipe checkout; the shop caches
// ref → checkout id (bounded) to spare API calls, and on a miss (another
// replica, a restart) finds the checkout again by its return URL among the
// merchant's newest checkouts. Form tokens are signed with a per-process
// key, so a form rendered before a restart, or by another replica, is
// refused with a request to press Pay again (nothing is charged).
//
// # Security
//
// Pages carry a strict Content-Security-Policy: no external assets, inline
// CSS and scripts admitted by hash only, fetch to the shop's own origin
// only, no framing. Scripts write with textContent only. Every API call has
// a timeout, every body read a limit, every retry and wait a bound.
package shop
