// Resolves the host's imports (`capstan:controller/...`) to the fakes of test/host.mjs.
import { register } from "node:module";

register(
  "data:text/javascript," +
    encodeURIComponent(`
      export async function resolve(specifier, context, next) {
        if (specifier.startsWith("capstan:controller/")) {
          return { url: ${JSON.stringify(new URL("./host.mjs", import.meta.url).href)}, shortCircuit: true };
        }
        return next(specifier, context);
      }`),
);
