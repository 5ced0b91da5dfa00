(() => {
  'use strict';
  // Polls the order's status every 500 ms and shows what paypipe says,
  // until the checkout is final (or for at most 30 minutes).
  const root = document.getElementById('order');
  if (!root || root.dataset.final === 'true') return;
  const url = root.dataset.statusUrl;
  const byId = (id) => document.getElementById(id);
  const maxPolls = 3600;
  let polls = 0;

  const apply = (v) => {
    const chip = byId('status');
    chip.textContent = v.status;
    chip.className = 'chip chip-' + v.status;
    byId('label').textContent = v.label;
    const steps = byId('steps').children;
    v.steps.forEach((s, i) => {
      if (steps[i]) {
        steps[i].className = 'step-' + s.state;
        steps[i].dataset.state = s.state;
        steps[i].lastElementChild.textContent = ' (' + s.state + ')';
      }
    });
    if (v.payment_url) byId('pay-link').href = v.payment_url;
    byId('pay-next').hidden = !v.payment_url;
    byId('completed').hidden = !v.completed;
    byId('failed').hidden = !v.failed;
    byId('failure').textContent = v.failure_code;
    byId('orders').replaceChildren(...v.orders.map((o) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = o.seller;
      tr.append(th);
      for (const k of ['amount', 'fee', 'net', 'status']) {
        const td = document.createElement('td');
        td.textContent = o[k];
        tr.append(td);
      }
      return tr;
    }));
    byId('sum-amount').textContent = v.total;
    byId('sum-fee').textContent = v.fee_total;
    byId('sum-net').textContent = v.net_total;
    byId('updated').textContent = '· updated ' + new Date().toLocaleTimeString();
  };

  const poll = async () => {
    polls++;
    try {
      const res = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store', signal: AbortSignal.timeout(5000) });
      if (res.ok) {
        const v = await res.json();
        apply(v);
        if (v.final) return;
      }
    } catch (e) {
      // A blip of the network or of paypipe: the next poll tries again.
    }
    if (polls >= maxPolls) {
      byId('updated').textContent = '· stopped updating: reload the page for the latest status';
      return;
    }
    setTimeout(poll, 500);
  };
  setTimeout(poll, 500);
})();
