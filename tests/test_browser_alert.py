"""The alert is defined once: in a real Chromium, the compose page's preview and the toast
a student's open tab gets when it is really sent have the same structure, for every
priority with and without confirmation."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from .browser import online_in_own_context, sign_in

pytestmark = pytest.mark.browser

BODY = "Bring a **towel** and *goggles*:\n\n- cap\n- lock\n\n[Timetable](https://example.org/t)"

# The buttons of each (priority, require_ack): Confirm only when confirmation is required;
# Dismiss, or Later while it is pending; an emergency to confirm cannot be put off; an
# emergency asks for the roll call first.
BUTTONS = {
    ("normal", False): ["Dismiss"],
    ("normal", True): ["Confirm", "Later"],
    ("urgent", False): ["Dismiss"],
    ("urgent", True): ["Confirm", "Later"],
    ("emergency", False): ["I'm safe", "I need help", "Dismiss"],
    ("emergency", True): ["I'm safe", "I need help", "Confirm"],
}

# The alert's tree: tags, classes, every text node (the meta line only up to its time,
# which is "now" in the preview and the sending time in the toast), links' targets.
SHAPE = """root => {
  const shape = node => {
    if (node.nodeType === Node.TEXT_NODE) return node.data;
    const item = {tag: node.localName, class: node.className};
    if (node.classList.contains("schoolbell-meta")) {
      item.author = node.textContent.split(" \\u00b7 ")[0];
      return item;
    }
    if (node.localName === "a") item.href = node.getAttribute("href");
    item.children = Array.from(node.childNodes, shape);
    return item;
  };
  return shape(root);
}"""


def buttons(alert: Locator) -> list[tuple[str, bool]]:
    """(label, disabled) of the alert's buttons, in order."""
    return alert.locator("button").evaluate_all("bs => bs.map(b => [b.textContent, b.disabled])")


def test_the_preview_is_the_alert_recipients_get(
    page: Page, browser: Browser, live_school, console_errors
):
    url, school = live_school.server.url, live_school.school
    student, student_errors, _ = online_in_own_context(browser, url, school.emails["s7b_1"])
    sign_in(page, url, school.emails["admin"])

    for (priority, require_ack), labels in BUTTONS.items():
        case = f"{priority}, require_ack={require_ack}"
        title = f"Pool <b>{priority}</b> {require_ack}"  # plain text, never markup
        page.goto(url + "/notifications/new")
        page.get_by_label("Message").fill(BODY)
        page.get_by_label("Priority").select_option(priority)
        page.get_by_label("Requires confirmation").set_checked(require_ack)
        page.get_by_label("Students of 7b").check()
        page.get_by_label("Title").fill(title)  # last: the preview showing it is current
        preview = page.locator("#alert-preview .schoolbell-toast")
        expect(preview.locator(".schoolbell-title")).to_have_text(title)
        expect(page.locator("#recipient-count [data-recipient-count]")).to_have_text("3")
        previewed = preview.evaluate(SHAPE)

        page.get_by_role("button", name="Send").click()
        if priority == "emergency":
            page.get_by_role("button", name="Yes, send now").click()
        expect(page).to_have_url(re.compile(r"/notifications/\d+$"))
        nid = int(page.url.rsplit("/", 1)[1])
        toast = student.locator(f"#schoolbell-toast-{nid}")
        expect(toast).to_be_visible()

        assert toast.evaluate(SHAPE) == previewed, case
        assert toast.locator(".schoolbell-title b").count() == 0, case
        assert [label for label, _ in buttons(toast)] == labels, case
        assert all(disabled for _, disabled in buttons(preview)), case
        assert not any(disabled for _, disabled in buttons(toast)), case

    assert console_errors == [] and student_errors == []
