/**
 * The built-in policy: what applies under whatever `--policy` says (the file adds and overrides). It is written
 * in the policy file's own syntax, so a reader sees it exactly as `mta-queue policy show` and a file would, and
 * it goes through the same validation. Numbers come from KumoMTA's maintained `assets/policy-extras/shaping.toml`
 * (itself partly supplied by the providers) and from the providers' postmaster pages named beside them; where a
 * provider publishes no number, the value is a conservative guess and says so.
 */
export const BUILT_IN_POLICY = String.raw`
[shaping.default]
# KumoMTA's defaults for a site nobody described, but no rate (KumoMTA: 100/sec messages, 100/min connections):
# like Postfix (default_destination_rate_delay = 0), a site nobody described is limited by its connections alone.
connection_limit = 10
max_deliveries_per_connection = 100
# KumoMTA uses 100; 10 stops a dead site from costing 100 connection attempts first.
consecutive_connection_failures_before_delay = 10
connection_failure_delay = "5m"

# https://support.google.com/mail/answer/81126: Gmail and Workspace MXes share addresses, so one provider.
[shaping.provider.google]
match = [".google.com", ".googlemail.com"]
max_deliveries_per_connection = 50
provider_connection_limit = 5
consecutive_connection_failures_before_delay = 5

# https://senders.yahooinc.com/best-practices (Yahoo and AOL share these MXes).
[shaping.provider.yahoo]
match = [".yahoodns.net"]
max_deliveries_per_connection = 20

# Microsoft's consumer (outlook.com, hotmail.com) and 365 edges are separate server groups:
# https://sendersupport.olc.protection.outlook.com/pm/Policies
[shaping.provider.outlook]
match = [".olc.protection.outlook.com"]
max_deliveries_per_connection = 50
provider_connection_limit = 5

[shaping.provider.office365]
match = [".mail.protection.outlook.com", ".mx.microsoft"]
max_deliveries_per_connection = 50
provider_connection_limit = 5

# https://support.apple.com/en-us/102322
[shaping.provider.apple]
match = [".icloud.com"]
max_deliveries_per_connection = 5
provider_connection_limit = 10

# https://messagerie.orange.fr/postmaster.html: few connections per sending address.
[shaping.provider.orange]
match = [".orange.fr"]
max_deliveries_per_connection = 100
provider_connection_limit = 2

# GMX and web.de (United Internet) publish no number but refuse many parallel connections: a guess, as Orange.
[shaping.provider.united-internet]
match = [".gmx.net", ".gmx.com", ".web.de"]
max_deliveries_per_connection = 100
provider_connection_limit = 2

# Yahoo TS04/TSS04: "temporarily deferred"; Yahoo asks senders to stop for hours (KumoMTA suspends for 2h).
[[shaping.rule]]
match = '\[TSS?04\]'
action = "suspend"
duration = "2h"

# Yahoo TS01-TS03 and Microsoft's reputation limits (4.7.650, S3150): slow to a trickle (KumoMTA's automation).
[[shaping.rule]]
match = '\[TS0[1-3]\]|rate limited due to IP reputation|4\.7\.650|S3150|Messages from [0-9.]+ temporarily deferred'
action = "throttle"
max_message_rate = "1/min"
connection_limit = 1
duration = "90m"

# Google 421-4.7.28 "unusual rate of unsolicited mail": Google rate-limits the address itself.
[[shaping.rule]]
match = '4\.7\.28|unusual rate'
action = "throttle"
max_message_rate = "1/min"
connection_limit = 1
duration = "1h"

# "421 Too many connections": one connection at a time for a while.
[[shaping.rule]]
match = 'too many (concurrent |simultaneous )?connections'
action = "throttle"
connection_limit = 1
duration = "30m"
`;
