// node-casbin over authz's rules: `node check.js MODEL [--no-domain-function] < input.json`.
// input.json: {"rules": [[ptype, v0, v1, ...], ...], "now": "<RFC 3339>", "questions": [[sub, dom, obj, scope, act], ...]}
// Prints one line of JSON: the decisions, in order.
const { newEnforcer } = require('casbin');

// Only the stored "*" is a wildcard; ids from requests are compared as data.
function domainMatches(requestDomain, storedDomain) {
  return storedDomain === '*' || storedDomain === requestDomain;
}

async function main() {
  const [modelPath, flag] = process.argv.slice(2);
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const enforcer = await newEnforcer(modelPath);
  if (flag !== '--no-domain-function') {
    await enforcer.addNamedDomainMatchingFunc('g', domainMatches);
  }
  const now = Date.parse(input.now);
  for (const [ptype, ...values] of input.rules) {
    if (ptype === 'p') {
      await enforcer.addPolicy(...values);
    } else if (ptype === 'g') {
      const [sub, role, domain, expires] = values;
      if (expires && Date.parse(expires) <= now) continue; // an expired grant decides nothing
      await enforcer.addGroupingPolicy(sub, role, domain);
    }
  }
  const decisions = [];
  for (const question of input.questions) {
    decisions.push(await enforcer.enforce(...question));
  }
  console.log(JSON.stringify(decisions));
}

main().catch((error) => { console.error(error); process.exit(1); });
