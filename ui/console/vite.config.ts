// Builds the console as an Airflow React app plugin: one UMD file that registers globalThis.AirflowPlugin.
// React, ReactDOM, the JSX runtime, React Router, Chakra UI and Emotion are the Airflow UI's own (the globals it
// sets before importing a plugin's bundle), so the pages share its theme and its router; chart.js is bundled.
import react from "@vitejs/plugin-react";
import { resolve } from "node:path";
import { defineConfig } from "vite";

const globals: Record<string, string> = {
  react: "React",
  "react-dom": "ReactDOM",
  "react/jsx-runtime": "ReactJSXRuntime",
  "react-router-dom": "ReactRouterDOM",
  "@chakra-ui/react": "ChakraUI",
  "@emotion/react": "EmotionReact",
};

export default defineConfig({
  plugins: [react()],
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: resolve(__dirname, "../../plugins/dynamics_jobqueue/console/static"),
    emptyOutDir: true,
    sourcemap: false,
    lib: {
      entry: resolve(__dirname, "src/main.tsx"),
      name: "AirflowPlugin",
      formats: ["umd"],
      fileName: () => "console.js",
    },
    rollupOptions: {
      external: Object.keys(globals),
      output: { globals, exports: "default" },
    },
  },
});
