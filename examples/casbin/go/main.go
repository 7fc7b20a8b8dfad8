// casbin/v2 over authz's casbin_rule table (with any SQL adapter, e.g. gorm-adapter).
// Untested here: see ../README.md.
package main

import (
	"fmt"

	"github.com/casbin/casbin/v2"
)

// domainMatches: only the stored "*" is a wildcard; ids from requests are compared as data.
func domainMatches(requestDomain string, storedDomain string) bool {
	return storedDomain == "*" || storedDomain == requestDomain
}

func main() {
	enforcer, err := casbin.NewEnforcer("policy_model.conf", "policy.csv") // or NewEnforcer(model, adapter)
	if err != nil {
		panic(err)
	}
	enforcer.AddNamedDomainMatchingFunc("g", "authz", domainMatches)
	// Leave out g rules whose fourth value (v3, the expiry) is in the past when you load them.
	allowed, _ := enforcer.Enforce("user:alice", "org_0123456789abcdef01234567", "algorithm", "algorithm:grover", "read")
	fmt.Println(allowed)
}
