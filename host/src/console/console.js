// Refreshes the incidents table in place every few seconds (the page's only script; the
// Content-Security-Policy allows no other).
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
      if (fresh) document.getElementById("incidents").replaceWith(fresh);
    } catch (_) { /* the next tick tries again */ }
  }, every);
});
