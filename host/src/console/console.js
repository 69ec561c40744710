// Refreshes the incidents table in place every few seconds when it changed, keeping the
// keyboard focus where it was (the page's only script; the Content-Security-Policy allows no
// other).
document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("incidents");
  if (!table) return;
  const every = Number(table.dataset.refresh || "5") * 1000;
  setInterval(async () => {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      const holder = document.createElement("div");
      holder.innerHTML = await response.text();
      const fresh = holder.querySelector("#incidents");
      const current = document.getElementById("incidents");
      if (!fresh || fresh.outerHTML === current.outerHTML) return;
      // Keep a keyboard user's place: focus the same link in the new table.
      const focused = current.contains(document.activeElement)
        ? document.activeElement.getAttribute("href") : null;
      current.replaceWith(fresh);
      if (focused) {
        const again = [...fresh.querySelectorAll("a[href]")]
          .find((a) => a.getAttribute("href") === focused);
        if (again) again.focus();
      }
    } catch (_) { /* the next tick tries again */ }
  }, every);
});
