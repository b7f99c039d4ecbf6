// The TAESDV entries of ComfyUI's settings dialog (Settings -> TAESDV -> Previews) and how they
// reach the server's global preview switch (GET/POST /taesdv/preview/settings).
import { api } from "../../scripts/api.js";

export const SETTING_ENABLED = "TAESDV.Preview.Enabled";
export const SETTING_FPS = "TAESDV.Preview.FPS";
export const SETTING_SIZE = "TAESDV.Preview.MaxSize";
export const SIZES = [128, 192, 256, 320, 384, 512];

async function pushSettings(changes) {
  try {
    const response = await api.fetchApi("/taesdv/preview/settings", { method: "POST", body: JSON.stringify(changes) });
    if (!response.ok) console.warn("TAESDV preview settings refused:", (await response.json()).error);
  } catch (e) {
    console.warn("TAESDV preview settings could not be sent", e);
  }
}

// onChange also runs once when the settings load (old is undefined then): only real changes are sent.
const sendOnChange = (toServer) => (value, old) => {
  if (old !== undefined && value !== old) pushSettings(toServer(value));
};

export const settings = [
  {
    id: SETTING_ENABLED,
    category: ["TAESDV", "Previews", "Enabled"],
    name: "Animated TAESDV previews for every sampler with a matching tiny decoder (no node needed)",
    tooltip: "Server-wide: SD1.x/SD2.x/SVD (TAESDV), Wan/HunyuanVideo/LTX (TAEHV) and SDXL/SD3/FLUX (image TAESD), with a matching file in models/vae_approx. The TAESDV Latent Preview node turns previews on for one model, with its own settings.",
    type: "boolean",
    defaultValue: false,
    onChange: sendOnChange((value) => ({ enabled: !!value })),
  },
  {
    id: SETTING_FPS,
    category: ["TAESDV", "Previews", "FPS"],
    name: "Playback rate of global previews (frames per second)",
    type: "slider",
    attrs: { min: 1, max: 30, step: 1 },
    defaultValue: 8,
    onChange: sendOnChange((value) => ({ fps: Number(value) })),
  },
  {
    id: SETTING_SIZE,
    category: ["TAESDV", "Previews", "Size"],
    name: "Largest side of global preview frames (pixels)",
    type: "combo",
    // A combo lists strings, or {text, value} pairs: the dialog shows `text` and stores `value`.
    options: SIZES.map((px) => ({ text: `${px} px`, value: px })),
    defaultValue: 256,
    onChange: sendOnChange((value) => ({ max_size: Number(value) })),
  },
];

// Brings the server in line with this browser's saved settings when previews are on here.
export function pushSavedSettings(settingApi) {
  if (!settingApi?.get?.(SETTING_ENABLED)) return;
  pushSettings({ enabled: true, fps: Number(settingApi.get(SETTING_FPS)), max_size: Number(settingApi.get(SETTING_SIZE)) });
}
