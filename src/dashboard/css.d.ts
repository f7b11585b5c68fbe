/** CSS files are bundled by esbuild into dist/dashboard/app.css. */
declare module "*.css";
