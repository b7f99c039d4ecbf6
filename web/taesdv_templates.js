// Puts this pack's demo first among its templates (Templates -> ComfyUI-TAESDV). ComfyUI lists a
// pack's example_workflows/ in file-system order and the dialog keeps that order; the demo is the one
// example that runs on nothing but `start.sh --demo-weights`, so a newcomer should meet it first.
// No frontend API orders a pack's templates, so this wraps the one call that lists them.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

export const FIRST_TEMPLATE = "taesdv_demo_live_preview";

// {pack folder: [template names]} -> the same, this pack's entry (whatever its folder is named)
// reordered: the demo, then the rest by name. Other packs' entries are left as they are.
export function demoFirst(templates) {
  for (const [pack, names] of Object.entries(templates ?? {})) {
    if (Array.isArray(names) && names.includes(FIRST_TEMPLATE)) {
      templates[pack] = [FIRST_TEMPLATE, ...names.filter((name) => name !== FIRST_TEMPLATE).sort()];
    }
  }
  return templates;
}

app.registerExtension({
  name: "TAESDV.Templates",
  init() {
    if (typeof api.getWorkflowTemplates !== "function") return;
    const listTemplates = api.getWorkflowTemplates.bind(api);
    api.getWorkflowTemplates = async () => demoFirst(await listTemplates());
  },
});
