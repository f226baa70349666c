// The sidebar and contents toggles that a reader can see do something (issue 20).
//
// sphinx-book-theme 1.3 puts a second "primary-toggle" button in the article header (the one
// shown on every screen) besides pydata-sphinx-theme's in the page header (hidden by the
// book theme), and the same for the contents ("secondary-toggle"). Both themes' scripts bind
// only the first of each, `document.querySelector(".primary-toggle")`: the visible buttons
// did nothing, so a phone reader could not open the chapter list and a laptop reader could
// not collapse it. Each other button now passes its click to the first one, whose handlers
// do the right thing for the window: collapse the sidebar from 992 px up, else open it as a
// dialog.
document.addEventListener("DOMContentLoaded", () => {
  for (const selector of [".primary-toggle", ".secondary-toggle"]) {
    const [first, ...others] = document.querySelectorAll(selector);
    for (const button of others) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        first.click();
      });
    }
  }
});
