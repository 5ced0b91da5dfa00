(() => {
  'use strict';
  // Shows the basket's total as the buyer chooses; the server computes the
  // amounts it charges on its own. Integer minor units only.
  const form = document.getElementById('basket');
  if (!form) return;
  const exp = Number(form.dataset.exponent);
  const code = form.dataset.currency;
  const out = document.getElementById('total');
  const pay = document.getElementById('pay');
  const format = (minor) => {
    let s = String(minor);
    if (exp > 0) {
      s = s.padStart(exp + 1, '0');
      s = s.slice(0, -exp) + '.' + s.slice(-exp);
    }
    return code + ' ' + s;
  };
  const update = () => {
    let total = 0;
    let ok = true;
    for (const input of form.querySelectorAll('input[data-price]')) {
      const q = input.value.trim() === '' ? 0 : Number(input.value);
      if (!Number.isInteger(q) || q < 0 || q > 10) {
        ok = false;
        continue;
      }
      total += q * Number(input.dataset.price);
    }
    out.textContent = ok ? format(total) : '—';
    pay.textContent = ok && total > 0 ? 'Pay ' + format(total) : 'Pay';
  };
  form.addEventListener('input', update);
  // The button stays enabled: a second submit is harmless (same form token,
  // same Idempotency-Key, same checkout).
  form.addEventListener('submit', () => { pay.textContent = 'Redirecting to payment…'; });
  update();
})();
