"""A small workflow with every kind of timed step, shared by the timer tests."""

from __future__ import annotations

TEXT = '''
[workflow]
name = "dean-review"
version = 1
initial = "submitted"

[actors]
applicant = "Ansøger"
dean = "Dekan"

[states.submitted]
label = "Indsendt"

[states.review]
label = "Til behandling hos dekanen"
# the dean decides within 30 days of the review starting, by any exit
deadline = { after = { state = "review" }, days = 30 }

[states.escalated]
label = "Eskaleret til rektor"

[states.approved]
final = true

[states.lapsed]
final = true

[[transitions]]
trigger = "submit"
source = "submitted"
target = "review"
actors = ["applicant"]

[[transitions]]
trigger = "approve"
source = "review"
target = "approved"
actors = ["dean"]

[[transitions]]
trigger = "approve"
source = "escalated"
target = "approved"
actors = ["dean"]

[[transitions]]
trigger = "remind"
source = "review"
after = { state = "review", days = 20 }
label = "Påmindelse til dekanen"

[[transitions]]
trigger = "escalate"
source = "review"
target = "escalated"
escalates = "review"
label = "Fristen er overskredet: sagen går til rektor"

[[transitions]]
trigger = "lapse"
source = "escalated"
target = "lapsed"
after = { state = "escalated", days = 10 }

[[transitions]]
trigger = "expire"
source = "submitted"
target = "lapsed"
at = { data = "expires" }
'''
