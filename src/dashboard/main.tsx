/** The dashboard's entry point (bundled into dist/dashboard/app.js by scripts/build-dashboard.mjs). */
import "uplot/dist/uPlot.min.css";
import "./styles.css";
import { render } from "preact";
import { App } from "./App.js";

const root = document.getElementById("app");
if (root) render(<App />, root);
