// The console's shell: skip link, header with sign-out, the side menu the guide describes
// ("My Services", "Media Services", Customers; for the admin Resellers and Nodes), and routes.
import { useEffect, useState } from "preact/hooks";
import { LocationProvider, Route, Router, useLocation } from "preact-iso";
import { SessionGate, useSession } from "./session";
import { SignIn } from "./pages/SignIn";
import { Dashboard } from "./pages/Dashboard";
import { Services } from "./pages/Services";
import { ServicePage } from "./pages/Service";
import { Wizard } from "./pages/Wizard";
import { CustomerOverview, Customers, NewCustomer } from "./pages/Customers";
import { NewReseller, ResellerPage, Resellers } from "./pages/Resellers";
import { Nodes } from "./pages/Nodes";
import { Account } from "./pages/Account";
import { CustomerMediaLibrary, OwnMediaLibrary } from "./pages/MediaLibrary";
import { NotFound } from "./pages/NotFound";

interface NavItem {
  href: string;
  label: string;
}

function navFor(session: ReturnType<typeof useSession>): NavItem[] {
  if (session.isAdmin) {
    return [
      { href: "/", label: "Dashboard" },
      { href: "/services", label: "Media Services" },
      { href: "/customers", label: "Customers" },
      { href: "/resellers", label: "Resellers" },
      { href: "/nodes", label: "Nodes" },
    ];
  }
  if (session.isReseller) {
    return [
      { href: "/", label: "Dashboard" },
      { href: "/services/my", label: "My Services" },
      { href: "/services", label: "Media Services" },
      { href: "/customers", label: "Customers" },
    ];
  }
  return [
    { href: "/", label: "Dashboard" },
    { href: "/services", label: "My Services" },
    { href: "/media", label: "Media library" },
  ];
}

function Shell() {
  const session = useSession();
  const location = useLocation();
  const [menuOpen, setMenuOpen] = useState(false);
  const nav = navFor(session);

  // A new page: close the menu, name the page, and move focus to its heading so keyboard and
  // screen-reader users start reading there.
  useEffect(() => {
    setMenuOpen(false);
    const heading = document.querySelector<HTMLElement>("main h1");
    document.title = `${heading?.textContent ?? "castplane"} · castplane console`;
    if (document.activeElement && document.activeElement !== document.body) heading?.focus();
  }, [location.url]);

  const current = (href: string) =>
    href === "/" ? location.path === "/" : location.path === href || (href !== "/services" && location.path.startsWith(`${href}/`));

  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <button
          type="button"
          class="menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="side-menu"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          Menu
        </button>
        <a href="/" class="brand">
          castplane
        </a>
        <span class="who">{session.caller.displayName}</span>
        <a href="/account">Account</a>
        <button type="button" class="link" onClick={session.signOut}>
          Sign out
        </button>
      </header>
      <nav id="side-menu" class={menuOpen ? "side open" : "side"} aria-label="Main">
        <ul>
          {nav.map((item) => (
            <li>
              <a href={item.href} aria-current={current(item.href) ? "page" : undefined}>
                {item.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        <Router>
          <Route path="/" component={Dashboard} />
          <Route path="/services" component={() => <Services scope={session.isReseller ? "customers" : "all"} />} />
          <Route path="/services/my" component={() => <Services scope="my" />} />
          <Route path="/services/:id" component={ServicePage} />
          <Route path="/create" component={Wizard} />
          <Route path="/customers" component={Customers} />
          <Route path="/customers/new" component={NewCustomer} />
          <Route path="/customers/:id" component={CustomerOverview} />
          <Route path="/customers/:id/media" component={CustomerMediaLibrary} />
          <Route path="/media" component={OwnMediaLibrary} />
          <Route path="/resellers" component={Resellers} />
          <Route path="/resellers/new" component={NewReseller} />
          <Route path="/resellers/:id" component={ResellerPage} />
          <Route path="/nodes" component={Nodes} />
          <Route path="/account" component={Account} />
          <Route default component={() => <NotFound />} />
        </Router>
      </main>
    </div>
  );
}

export function App() {
  return (
    <LocationProvider>
      <SessionGate signIn={(onSignedIn, notice) => <SignIn onSignedIn={onSignedIn} notice={notice} />}>
        <Shell />
      </SessionGate>
    </LocationProvider>
  );
}
